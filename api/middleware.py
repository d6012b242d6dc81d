"""Per-request concerns around every route: request id, API keys, metrics, one JSON log line."""
from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid

from flask import Flask, g, request

from errors import Unauthorized

access_log = logging.getLogger("image_service.access")

# Routes an orchestrator or scraper calls without a key.
OPEN_ENDPOINTS = {"operations.health", "operations.ready", "operations.metrics"}
# Blueprints whose clients send the key as a form field `api_key` (DeepStack's API): read from a
# multipart/form-data body only, as those clients send it (a urlencoded body is not theirs, and a
# key there would authenticate a request no DeepStack client makes). Every other route's body
# is left to the route.
FORM_KEY_BLUEPRINTS = {"deepstack"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _presented_key() -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if request.blueprint in FORM_KEY_BLUEPRINTS and request.mimetype == "multipart/form-data":
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
        if settings.api_keys and request.endpoint not in OPEN_ENDPOINTS:
            if not _key_is_valid(_presented_key(), settings.api_keys):
                raise Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="image-classification-service"'})

    @app.after_request
    def _finish(response):
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule else "unmatched"
        response.headers["X-Request-ID"] = g.get("request_id", "")
        metrics.request_done(route, request.method, response.status_code, seconds)
        line = {"event": "request", "request_id": g.get("request_id"), "method": request.method,
                "route": route, "status": response.status_code,
                "duration_ms": round(seconds * 1000, 2), **g.get("log_fields", {})}
        access_log.info(json.dumps(line, separators=(",", ":"), default=str))
        return response

    @app.teardown_request
    def _teardown(_exc):
        if g.pop("counted_in_flight", False):
            metrics.in_flight.dec()
