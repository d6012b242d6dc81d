"""Operator and documentation routes: /metrics, /report, /openapi.json, /docs."""
from __future__ import annotations

import functools
import importlib.util
import mimetypes
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, jsonify

import metrics as metrics_module
from openapi import openapi_document

bp = Blueprint("ops", __name__)

# Swagger UI's files come from the pinned swagger-ui-py package: no CDN, works offline.
_SWAGGER_STATIC = Path(importlib.util.find_spec("swagger_ui").submodule_search_locations[0]) / "static"
_SWAGGER_FILES = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                  "index.css", "favicon-32x32.png", "favicon-16x16.png"}

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
  <script>
    window.onload = function () {
      window.ui = SwaggerUIBundle({
        url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "StandaloneLayout"
      });
    };
  </script>
</body>
</html>
"""


@bp.get("/metrics")
def metrics():
    return Response(current_app.extensions["metrics"].render(), mimetype=None,
                    content_type=metrics_module.CONTENT_TYPE)


@bp.get("/report")
def report():
    return jsonify(current_app.extensions["report"].snapshot())


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(current_app))


@bp.get("/docs")
def docs():
    return Response(_DOCS_PAGE, mimetype="text/html")


@bp.get("/docs/static/<path:filename>")
def docs_static(filename: str):
    if filename not in _SWAGGER_FILES:
        abort(404)
    data, mimetype = _swagger_file(filename)
    response = Response(data, mimetype=mimetype)
    response.cache_control.max_age = 86400
    return response


@functools.lru_cache(maxsize=None)
def _swagger_file(filename: str) -> tuple[bytes, str]:
    """Read once and served from memory: a few small files, no file handle per request."""
    mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return (_SWAGGER_STATIC / filename).read_bytes(), mimetype
