"""API errors as data: each class states its status, type and default message.

Raised anywhere (data plane, registry, HTTP layer); api/errors.py turns them, and werkzeug's,
into one JSON shape. Messages are written here, never copied from an exception, so no path,
repr or traceback reaches a client.
"""
from __future__ import annotations

# The most characters of a client's own text (a model name, a field) an error message quotes.
ECHO_CHARS = 64


def echo(text: str, limit: int = ECHO_CHARS) -> str:
    """A client's text as an error message quotes it: at most `limit` characters, then "…", and
    anything non-printable as '?'. However long or odd the input, the message stays short and
    on one line (a 20 kB model name is not sent back whole, nor written whole to a log)."""
    shown = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return shown + "…" if len(text) > limit else shown


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


class MalformedBody(ApiError):
    """The request body cannot be parsed at all (JSON too deep, invalid, wrongly encoded)."""
    code, type = 400, "bad_request"


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

    @classmethod
    def naming(cls, name: str, configured: list[str], task: str | None = None) -> "ModelNotFound":
        """The one message for an unknown model name, listing the configured ones."""
        scope = f" for {task}" if task else ""
        return cls(f"Model '{echo(name)}' is not configured{scope}; configured: {', '.join(configured) or 'none'}.",
                   details={"configured": configured})


class ModelNotReady(ApiError):
    code, type = 503, "model_not_ready"
    message = "The model is not ready; try again shortly."


class InferenceFailed(ApiError):
    code, type = 500, "inference_failed"
    message = "The model failed while processing this image."


class NonFiniteResult(InferenceFailed):
    """An answer held NaN or an infinity, which JSON cannot carry (api.answers.FiniteJSONProvider)."""
    message = ("The model's result held a value that is not a finite number (NaN or infinity), "
               "which JSON cannot carry; it was not sent.")


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


class ClientGone(ApiError):
    """The client closed its connection before its answer was ready: nobody reads this answer,
    so its work is dropped (nginx's 499 in the access log and metrics)."""
    code, type = 499, "client_closed_request"
    message = "The client closed the connection before the answer was ready."


class InferenceTimeout(ApiError):
    code, type = 504, "inference_timeout"
    message = "The model did not answer within the time limit."


class UpstreamError(ApiError):
    code, type = 502, "upstream_error"
    message = ("The model's inference engine failed or gave an answer that cannot be used; "
               "try again shortly.")


class NoFace(ApiError):
    """A photo that must show a face (to register, to match) shows none the detector finds."""
    code, type = 400, "no_face"
    message = "No face was found in the image."


class FaceStoreUnavailable(ApiError):
    """The face store's database cannot be read or written (PostgreSQL down, SQLite locked or
    its disk full): nothing was registered or deleted; the client may retry."""
    code, type = 503, "face_store_unavailable"
    message = "The face store's database cannot be reached; nothing was changed. Try again shortly."

    def __init__(self, message: str | None = None, **kwargs):
        kwargs.setdefault("headers", {"Retry-After": "5"})
        super().__init__(message, **kwargs)
