"""API errors as data, and the handlers that give every error one JSON shape.

`{"error": {"code": 400, "type": "invalid_image", "message": "..."}}` for our own errors
and for werkzeug's (404, 405, 413, ...). Messages are written here, never copied from an
exception, so no path, repr or traceback reaches a client.
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    code = 500
    type = "internal_error"
    message = "The service failed to process the request."

    def __init__(self, message: str | None = None, *, headers: dict | None = None,
                 details: dict | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.headers = headers or {}
        self.details = details


class MissingImage(ApiError):
    code, type = 400, "missing_image"
    message = "Send the image as a multipart/form-data file field named 'image'."


class InvalidImage(ApiError):
    code, type = 400, "invalid_image"
    message = "The uploaded file is not a readable image."


class InvalidParameter(ApiError):
    code, type = 400, "invalid_parameter"


class UnsupportedMediaType(ApiError):
    code, type = 415, "unsupported_media_type"


class UnsupportedImageFormat(ApiError):
    code, type = 415, "unsupported_image_format"


class ImageTooLarge(ApiError):
    code, type = 413, "image_too_large"


class FeatureDisabled(ApiError):
    code, type = 403, "feature_disabled"


class ModelNotFound(ApiError):
    code, type = 404, "model_not_found"


class ModelNotReady(ApiError):
    code, type = 503, "model_not_ready"
    message = "The model is not ready; try again shortly."


class InferenceFailed(ApiError):
    code, type = 500, "inference_failed"
    message = "The model failed while processing this image."


class ImageUrlUnavailable(ApiError):
    code, type = 400, "image_url_unavailable"
    message = ("The image URL could not be fetched: it must be a public http(s) address that "
               "answers within the time limit.")


class Unauthorized(ApiError):
    code, type = 401, "unauthorized"
    message = "A valid API key is required: send it as X-API-Key or Authorization: Bearer."


class Overloaded(ApiError):
    code, type = 503, "overloaded"
    message = "The service is at capacity; retry shortly."


class ShuttingDown(ApiError):
    code, type = 503, "shutting_down"
    message = "The service is shutting down; retry on another instance."


class InferenceTimeout(ApiError):
    code, type = 504, "inference_timeout"
    message = "The model did not answer within the time limit."


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
        if code == 413:
            message = (f"The request body is larger than the limit of "
                       f"{app.config['MAX_UPLOAD_MB']} MB, or has too many parts.")
        else:
            message = err.description or err.name
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
