"""One JSON shape for every error: `{"error": {"code": 400, "type": "invalid_image", "message": "..."}}`,
for our own errors (errors.py) and for werkzeug's (404, 405, 413, ...)."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from errors import ApiError

log = logging.getLogger(__name__)

# werkzeug's names for its codes become our error types.
_HTTP_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "request_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    431: "headers_too_large",
}


def error_body(code: int, type_: str, message: str, details: dict | None = None) -> dict:
    body = {"code": code, "type": type_, "message": message}
    if details:
        body.update(details)
    return {"error": body}


def http_error_message(err: HTTPException, max_upload_mb: int) -> str:
    """What a client is told for one of werkzeug's errors (both error shapes use it)."""
    if err.code == 413:
        return f"The request body is larger than the limit of {max_upload_mb} MB, or has too many parts."
    return err.description or err.name


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        response = jsonify(error_body(err.code, err.type, err.message, err.details))
        response.status_code = err.code
        response.headers.update(err.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        code = err.code or 500
        message = http_error_message(err, app.config["MAX_UPLOAD_MB"])
        response = jsonify(error_body(code, _HTTP_TYPES.get(code, "http_error"), message))
        response.status_code = code
        if code == 405 and hasattr(err, "valid_methods") and err.valid_methods:
            response.headers["Allow"] = ", ".join(err.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        # Logged with its traceback for operators; the client gets a fixed message.
        log.exception("unhandled error while serving a request")
        response = jsonify(error_body(500, "internal_error", ApiError.message))
        response.status_code = 500
        return response
