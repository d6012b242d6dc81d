"""Operator routes: liveness, readiness, status, the models, metrics, the usage report, and the
API's own documentation (/openapi.json, /docs)."""
from __future__ import annotations

import functools
import importlib.util
import mimetypes
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, jsonify

from api.errors import error_body
from api.middleware import html_page
from api.openapi import openapi_document
from registry import TASKS

bp = Blueprint("operations", __name__)

# Swagger UI's files come from the pinned swagger-ui-py package: no CDN, works offline. The
# page's own script (docs.js) is a file of ours beside them, so the page runs no inline script.
_SWAGGER_STATIC = Path(importlib.util.find_spec("swagger_ui").submodule_search_locations[0]) / "static"
_DOCS_FILES = {name: _SWAGGER_STATIC / name for name in (
    "swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "index.css",
    "favicon-32x32.png", "favicon-16x16.png")}
_DOCS_FILES["docs.js"] = Path(__file__).parent / "static" / "docs.js"

_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>image-classification-service API</title>
  <link rel="stylesheet" href="docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/static/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/static/swagger-ui-bundle.js"></script>
  <script src="docs/static/swagger-ui-standalone-preset.js"></script>
  <script src="docs/static/docs.js"></script>
</body>
</html>
"""
# What /docs may load, read from Swagger UI's files: its scripts and styles from here; style
# attributes, which its Markdown renderer writes into HTML (table alignment); the data: icons in
# its CSS and blob: images (an image answer shown by "Try it out"); requests to this service only
# (the document, and "Try it out"). No inline or eval'd script, no font, no other origin.
DOCS_POLICY = ("script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data: blob:",
               "connect-src 'self'", "form-action 'self'")


def _registry():
    return current_app.extensions["registry"]


@bp.get("/health")
def health():
    # Liveness only: no lock, no model, nothing that can wait behind inference.
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    models = _registry().status()
    body = not_ready()
    if body is None:
        return jsonify(status="ready", models=models)
    body.update(status="not_ready", models=models)
    return jsonify(body), 503


def not_ready() -> dict | None:
    """Why the service is not ready, as an error body, or None when it is: /ready and the Open
    Inference Protocol's /v2/health/ready say the same."""
    admission, time_limit = current_app.extensions["admission"], current_app.extensions["time_limit"]
    if admission.draining.is_set():
        return error_body(503, "shutting_down", "The service is shutting down.")
    if not time_limit.healthy:
        return error_body(503, "inference_stuck", "Model calls are stuck past the time limit.")
    if not _registry().ready:
        return error_body(503, "not_ready", "Not every enabled model is loaded and ready yet.")
    return None


@bp.get("/status")
def status():
    registry = _registry()
    features = {}
    for task, entry in TASKS.items():
        names = registry.by_task.get(task, [])
        if names:
            features[task] = {"enabled": True, "model": names[0], "models": names}
        else:
            features[task] = {"enabled": False, "model": None, "models": [],
                              "enable_with": f"{entry.enable_variable}=true"}
    admission, store = current_app.extensions["admission"], current_app.extensions["shared_store"]
    worker = current_app.extensions.get("worker")  # this process' place under WORKERS > 1
    faces = current_app.extensions.get("faces")
    return jsonify(features=features, models=registry.status(), ready=registry.ready,
                   admission={"admitted": admission.admitted, "capacity": admission.capacity},
                   shared_store=store.status() if store else {"backend": "memory"},
                   face_store=faces.store.status() if faces else None,
                   worker={"index": worker.index, "count": worker.count} if worker else {"index": 0, "count": 1})


@bp.get("/models")
def list_models():
    return jsonify(models=[slot.details() for slot in _registry().slots.values()])


@bp.get("/models/<name>")
def model_details(name: str):
    return jsonify(_registry().get(name).details())


@bp.get("/models/<name>/labels")
def model_labels(name: str):
    return jsonify(name=name, labels=list(_registry().get(name).model.labels))


@bp.get("/metrics")
def metrics():
    registry = current_app.extensions["metrics"]
    return Response(registry.render(), mimetype=None, content_type=registry.content_type)


@bp.get("/report")
def report():
    return jsonify(current_app.extensions["report"].snapshot())


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(current_app))


@bp.get("/docs")
def docs():
    return html_page(_DOCS_PAGE, *DOCS_POLICY)


@bp.get("/docs/static/<path:filename>")
def docs_static(filename: str):
    if filename not in _DOCS_FILES:
        abort(404)
    data, mimetype = _swagger_file(filename)
    response = Response(data, mimetype=mimetype)
    response.cache_control.max_age = 86400
    return response


@functools.lru_cache(maxsize=None)
def _swagger_file(filename: str) -> tuple[bytes, str]:
    """Read once and served from memory: a few small files, no file handle per request."""
    mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return _DOCS_FILES[filename].read_bytes(), mimetype
