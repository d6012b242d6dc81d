"""The service's own web page at `/`: classify, detect, benchmark and watch the service from a
browser, with nothing to install. Its files are in the repository (api/static/page: plain ES
modules and a stylesheet, no build step, no library), so it works offline; it calls only the
public API, from the browser, with the user's key. The page declares its Content-Security-Policy
through html_page(): scripts, styles, images and requests from this service only, no inline
script or style, no other origin."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from flask import Blueprint, Response, abort, request

from api.middleware import html_page

bp = Blueprint("page", __name__)

ASSETS = Path(__file__).parent / "static" / "page"
# What the page may load: its own scripts and stylesheet, images from here and from blob: URLs
# (the user's photo and the annotated answer, both held in the browser), requests to this
# service. No inline script or style (it sets element.style from its scripts, which a policy
# allows), no font, no frame, no form that submits anywhere.
PAGE_POLICY = ("script-src 'self'", "style-src 'self'", "img-src 'self' blob:", "connect-src 'self'",
               "form-action 'none'")
# The types the page's files are served with (nosniff: a browser runs a module only with a
# JavaScript type). Any other file in the folder is not served.
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@bp.get("/")
def index():
    return html_page(_read("index.html")[0].decode(), *PAGE_POLICY)


@bp.get("/page/<path:filename>")
def asset(filename: str):
    """One of the page's files. A browser asks again each time it opens the page (no-cache) and
    gets 304 while the file is unchanged: a new release's modules are never mixed with old ones."""
    if filename not in _files():
        abort(404)
    data, etag = _read(filename)
    response = Response(data, mimetype=TYPES[Path(filename).suffix])
    response.set_etag(etag)
    response.cache_control.no_cache = True
    return response.make_conditional(request)


@functools.lru_cache(maxsize=1)
def _files() -> frozenset[str]:
    """The files served, found once: names under the folder with a type we serve."""
    return frozenset(path.relative_to(ASSETS).as_posix() for path in ASSETS.rglob("*")
                     if path.is_file() and path.suffix in TYPES)


@functools.lru_cache(maxsize=None)
def _read(filename: str) -> tuple[bytes, str]:
    """A file's bytes and ETag, read once: a few small files served from memory."""
    data = (ASSETS / filename).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:32]
