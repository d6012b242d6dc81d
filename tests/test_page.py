"""The page at `/` as the service serves it (the Flask test client; tests/test_page_browser.py
drives it in a real browser): its own Content-Security-Policy, no inline script or style, every
file it loads from this service, served with its type and revalidated, open without a key."""
from __future__ import annotations

import re

import pytest

from api import page
from tests.support.http import make_app

POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
          "form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
ASSETS = sorted(path.relative_to(page.ASSETS).as_posix() for path in page.ASSETS.rglob("*")
                if path.is_file() and path.name != "index.html")


@pytest.fixture
def html(client) -> str:
    answer = client.get("/")
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    assert answer.headers["Content-Security-Policy"] == POLICY
    assert answer.headers["Cache-Control"] == "no-store"
    return answer.get_data(as_text=True)


def test_the_page_has_no_inline_script_or_style(html):
    assert re.findall(r"<script(?![^>]*\ssrc=)", html) == []   # every script is a file
    assert "<style" not in html and re.findall(r"\sstyle\s*=", html) == []
    assert re.findall(r"\son\w+\s*=", html) == []                # no event handler attributes
    for name in ASSETS:
        if name.endswith(".js"):
            text = (page.ASSETS / name).read_text()
            assert not re.search(r"\b(eval|innerHTML|outerHTML|insertAdjacentHTML|document\.write)\b", text), name
            assert not re.search(r"setAttribute\(\s*[\"']style", text), name


def test_every_file_the_page_loads_is_its_own_from_this_service(client, html):
    """The HTML names files by relative URLs, the modules import each other by relative paths
    (no scheme, no other host), and every one of them is served."""
    loaded = re.findall(r"""(?:src|href)="([^"]+)\"""", html)
    assert loaded and all(not re.match(r"^[a-z]+:|^//", url) for url in loaded), loaded
    files = [url for url in loaded if url.startswith("page/")]
    assert {"page/main.js", "page/page.css", "page/icon.svg"} <= set(files)
    for name in ASSETS:
        if name.endswith(".js"):
            imports = re.findall(r"""^import .* from "([^"]+)";$""", (page.ASSETS / name).read_text(), re.M)
            assert all(spec.startswith("./") for spec in imports), (name, imports)
            files += [f"page/{spec[2:]}" for spec in imports]
    assert {f"page/{name}" for name in ASSETS} == set(files)   # nothing served that the page does not use
    for url in set(files):
        assert client.get("/" + url).status_code == 200, url


@pytest.mark.parametrize("name", ASSETS)
def test_each_file_is_served_with_its_type_and_revalidated(client, name):
    answer = client.get(f"/page/{name}")
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    assert answer.status_code == 200 and answer.mimetype == types[name[name.rindex("."):]]
    assert answer.data == (page.ASSETS / name).read_bytes()
    assert answer.headers["Cache-Control"] == "no-cache" and answer.headers["X-Content-Type-Options"] == "nosniff"
    again = client.get(f"/page/{name}", headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


def test_only_the_pages_files_are_served(client):
    for path in ("/page/index.html", "/page/../app.py", "/page/%2e%2e/app.py", "/page/nope.js", "/page/",
                 "/page/main.js/x"):
        answer = client.get(path)
        assert answer.status_code == 404 and answer.get_json()["error"]["type"] == "not_found", path


def test_the_page_opens_without_a_key_and_the_api_still_needs_one(tmp_path):
    client = make_app(tmp_path, api_keys=("page-key",)).test_client()
    for path in ["/", *(f"/page/{name}" for name in ASSETS)]:
        assert client.get(path).status_code == 200, path
    assert client.get("/models").status_code == 401
    assert client.get("/models", headers={"X-API-Key": "page-key"}).status_code == 200
