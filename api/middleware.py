"""Per-request concerns around every route: request id, API keys, metrics, one JSON log line,
and cross-origin access for browsers (CORS_ORIGINS)."""
from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from errors import Unauthorized

access_log = logging.getLogger("image_service.access")

# Routes called without a key: an orchestrator's or scraper's (/health, /ready and their Open
# Inference Protocol twins, which say no more than /ready does), and the API's own description
# (public: it says what the routes take, never a key or a model's data), so that /docs loads
# and its "Authorize" button takes the key for the calls made from it; likewise the page at `/`
# and its files (the same for everyone, no data in them), whose key field then sends the key.
OPEN_ENDPOINTS = {"operations.health", "operations.ready", "operations.metrics",
                  "operations.openapi", "operations.docs", "operations.docs_static",
                  "page.index", "page.asset",
                  # The Open Inference Protocol's health routes: liveness, readiness, a model's readiness.
                  "open_inference.live", "open_inference.server_ready", "open_inference.model_ready"}
# Blueprints whose clients send the key as a form field `api_key` (DeepStack's API): read from a
# multipart/form-data body only, as those clients send it (a urlencoded body is not theirs, and a
# key there would authenticate a request no DeepStack client makes). Every other route's body
# is left to the route.
FORM_KEY_BLUEPRINTS = {"deepstack", "faces"}
# Except where a DeepStack client sends its key urlencoded: deepstack-python's
# DeepstackFace.get_registered_faces posts `data={"api_key": ...}` with no file (DeepStack's gin
# server reads either encoding).
URLENCODED_KEY_ENDPOINTS = {"faces.list_faces"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# On every answer, errors and static files included: no MIME sniffing, never framed, no referrer.
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
# What an answer may load or run when it is not an HTML page (JSON, images, metrics, scripts and
# styles): nothing. A page declares what it needs with html_page().
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
# API answers are per request (and may hold a model's view of a client's image): never stored by
# a browser or a proxy. A route that may be cached (static files) sets its own Cache-Control.
CACHE_CONTROL = "no-store"


def html_page(body: str, *directives: str) -> Response:
    """An HTML page with its own Content-Security-Policy, the one place a page says what it may
    load: everything is refused (default-src 'none') except `directives` (e.g. "script-src
    'self'"), and no page may be framed or change its base URL."""
    response = Response(body, mimetype="text/html")
    response.headers["Content-Security-Policy"] = "; ".join(
        ("default-src 'none'", *directives, "base-uri 'none'", "frame-ancestors 'none'"))
    return response


def secure(response: Response) -> Response:
    """The security headers every answer carries (set here, not by waitress, so every way of
    serving the app has them); a page's own policy and a route's own caching are kept."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers.setdefault("Content-Security-Policy", API_POLICY)
    response.headers.setdefault("Cache-Control", CACHE_CONTROL)
    return response


# CORS (CORS_ORIGINS set): what a page of an allowed origin may send and read. The API key
# travels in a header the page's script sets (X-API-Key or Authorization), never in a cookie, so
# no answer allows credentials (cookies, HTTP authentication, client certificates): a browser
# then never sends or exposes them across origins, and '*' stays the plain wildcard.
CORS_REQUEST_HEADERS = ["Content-Type", "X-API-Key", "Authorization", "X-Request-ID"]
CORS_EXPOSED_HEADERS = ["X-Request-ID", "Server-Timing", "Retry-After", "X-Detections", "X-Detections-Drawn",
                        "X-Annotated-Size"]
CORS_METHODS = ["GET", "HEAD", "POST", "OPTIONS"]
CORS_MAX_AGE_S = 600   # how long a browser may reuse a preflight's answer


def allow_origins(app: Flask, origins: tuple[str, ...]) -> None:
    """CORS for `origins` (("*",): any) with flask-cors, on every route and error answer. A
    listed origin is echoed back (compared whole, without regard to case), '*' is answered '*';
    another origin gets no CORS header (the request is still served: CORS only tells a browser
    whether the calling page may read the answer). Every answer says `Vary: Origin`, as the CORS
    headers depend on it, for the caches in between."""
    from flask_cors import CORS

    wildcard = origins == ("*",)
    CORS(app, origins="*" if wildcard else [re.compile(re.escape(o) + r"\Z", re.IGNORECASE) for o in origins],
         send_wildcard=wildcard, supports_credentials=False, always_send=False, vary_header=False,
         methods=CORS_METHODS, allow_headers=CORS_REQUEST_HEADERS, expose_headers=CORS_EXPOSED_HEADERS,
         max_age=CORS_MAX_AGE_S)

    @app.after_request
    def _vary(response: Response) -> Response:
        response.vary.add("Origin")
        return response


def _answered_by_flask() -> bool:
    """An OPTIONS request Flask answers itself (a CORS preflight among them): no route runs, the
    answer lists methods only, and a browser never sends a key with a preflight. Every route
    leaves OPTIONS to Flask (tests/test_cors.py checks it)."""
    rule = request.url_rule
    return request.method == "OPTIONS" and rule is not None and bool(getattr(rule, "provide_automatic_options", False))


def _presented_key() -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if request.blueprint in FORM_KEY_BLUEPRINTS and (request.mimetype == "multipart/form-data" or (
            request.endpoint in URLENCODED_KEY_ENDPOINTS and request.mimetype == "application/x-www-form-urlencoded")):
        return request.form.get("api_key") or None
    return None


def _key_is_valid(presented: str | None, keys: tuple[str, ...]) -> bool:
    if presented is None:
        return False
    given = presented.encode("utf-8", "replace")   # keys are printable ASCII (config.py): no other text matches
    valid = False
    for key in keys:  # every key is compared, so timing does not tell which one came close
        valid |= hmac.compare_digest(given, key.encode())
    return valid


def server_timing(decode: float, inference: float, total: float) -> str:
    """The standard Server-Timing header of an inference answer (milliseconds): fetching and
    decoding, and the model's time, summed over the request's images (0 for a cache hit), and the
    whole request in the application. Browsers show it in their network panel; the page reads it."""
    return ", ".join(f"{name};dur={seconds * 1000:.1f}" for name, seconds in
                     (("decode", decode), ("inference", inference), ("total", total)))


def log_fields(**fields) -> None:
    """Routes add what the access log line should carry (model, image size, cache hit...)."""
    g.setdefault("log_fields", {}).update(fields)


def install(app: Flask) -> None:
    settings = app.extensions["settings"]
    metrics = app.extensions["metrics"]

    @app.before_request
    def _start():
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        metrics.in_flight.inc()
        g.counted_in_flight = True
        if settings.api_keys and request.endpoint not in OPEN_ENDPOINTS and not _answered_by_flask():
            if not _key_is_valid(_presented_key(), settings.api_keys):
                raise Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="image-classification-service"'})

    @app.after_request
    def _finish(response):
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule else "unmatched"
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if "server_timing" in g:
            response.headers["Server-Timing"] = server_timing(*g.server_timing, seconds)
        metrics.request_done(route, request.method, response.status_code, seconds)
        line = {"event": "request", "request_id": g.get("request_id"), "method": request.method,
                "route": route, "status": response.status_code,
                "duration_ms": round(seconds * 1000, 2), **g.get("log_fields", {})}
        access_log.info(json.dumps(line, separators=(",", ":"), default=str))
        return response

    app.after_request(secure)
    if settings.cors_origins:
        allow_origins(app, settings.cors_origins)

    @app.teardown_request
    def _teardown(_exc):
        if g.pop("counted_in_flight", False):
            metrics.in_flight.dec()
