"""The DeepStack / CodeProject.AI vision API (`/v1/vision/...`), answered by the configured
models, so NVR and home-automation clients (Frigate, Blue Iris, Home Assistant, Node-RED) work
unchanged. Same data plane, decoding, caps, admission and feature flags as every other route;
only the request fields, the answer and the error shape are theirs. The image is the `image`
part, or else the first file part whatever its name, as CodeProject.AI reads it (api.parsing).
docs/deepstack.md lists the sources each field was checked against."""
from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from api import answers
from api.errors import http_error_message
from api.inference import admitted, client_gone
from api.parsing import float_arg, read_sources
from contract import DETECTION, Detection
from dataplane.pipeline import ImageResult, Pipeline
from errors import ApiError, Unauthorized

log = logging.getLogger(__name__)

bp = Blueprint("deepstack", __name__, url_prefix="/v1/vision")

# DeepStack's server (server/server.go) and CodeProject.AI's modules both default to 0.4.
DEFAULT_MIN_CONFIDENCE = 0.4

# ImageAI's YOLO label file spells six COCO classes the VOC way. DeepStack answers COCO's
# names, and Frigate stops reading predictions at the first label its COCO labelmap lacks.
COCO_NAMES = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch",
              "pottedplant": "potted plant", "diningtable": "dining table", "tvmonitor": "tv"}


def _pipeline() -> Pipeline:
    return current_app.extensions["pipeline"]


def _route() -> str:
    return request.url_rule.rule


def _image():
    """The request's one image: `image`, or the first file part under any name (CodeProject.AI's)."""
    return read_sources(request, max_images=1, any_file_name=True)


# --- routes ------------------------------------------------------------------------------------

@bp.post("/detection")
@admitted
def detection():
    return _detect(model=None)


@bp.post("/custom/list")
def custom_list():
    """CodeProject.AI's list of custom models: here, every configured detector."""
    registry = current_app.extensions["registry"]
    registry.for_task(DETECTION)  # 403 when detection is disabled
    return jsonify(success=True, models=registry.by_task[DETECTION], code=200)


@bp.post("/custom/<model>")
@admitted
def custom(model: str):
    return _detect(model=model)


@bp.post("/scene")
@admitted
def scene():
    started = time.perf_counter()
    slot, results = _pipeline().classify(_image(), model=None, top_k=1, route=_route(), gone=client_gone())
    result = answers.single(results, slot.name)
    label, _, confidence = result.value[0]
    return _success(started, result, label=label, confidence=confidence)


def _detect(model: str | None):
    started = time.perf_counter()
    min_confidence = float_arg("min_confidence", default=DEFAULT_MIN_CONFIDENCE, minimum=0.0, maximum=1.0,
                               source=request.form)
    slot, results = _pipeline().detect(_image(), model=model,
                                       min_score=min_confidence, max_detections=None, classes=None,
                                       route=_route(), gone=client_gone())
    result = answers.single(results, slot.name)
    predictions = [prediction(d) for d in result.value]  # highest confidence first (the pipeline sorts)
    return _success(started, result, message=summary(predictions), count=len(predictions),
                    predictions=predictions)


# --- answers -----------------------------------------------------------------------------------

def prediction(d: Detection) -> dict:
    x_min, y_min, x_max, y_max = d.box
    return {"label": COCO_NAMES.get(d.label, d.label), "confidence": d.score,
            "x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max}


def summary(predictions: list[dict]) -> str:
    """CodeProject.AI's `message`: the first three labels found."""
    if not predictions:
        return "No objects found"
    labels = ", ".join(p["label"] for p in predictions[:3])
    return f"Found {labels}..." if len(predictions) > 3 else f"Found {labels}"


def _success(started: float, result: ImageResult, **fields):
    """CodeProject.AI's common fields around the answer: `inferenceMs` is the model call for
    this image (0 on a cache hit), `processMs` decoding plus the model call, and
    `analysisRoundTripMs` the whole request after admission."""
    return jsonify(success=True, **fields, inferenceMs=round(result.inference_seconds * 1000),
                   processMs=round(result.seconds * 1000),
                   analysisRoundTripMs=round((time.perf_counter() - started) * 1000), code=200)


# --- errors: DeepStack's shape, with the HTTP status as its `code` -----------------------------

def _error(code: int, message: str, headers: dict | None = None):
    response = jsonify(success=False, error=message, code=code)
    response.status_code = code
    response.headers.update(headers or {})
    return response


@bp.errorhandler(ApiError)
def _api_error(err: ApiError):
    message = err.message
    if isinstance(err, Unauthorized):
        message = ("A valid API key is required: send it as the multipart form field 'api_key' "
                   "(or as X-API-Key).")
    return _error(err.code, message, err.headers)


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException):
    return _error(err.code or 500, http_error_message(err, current_app.config["MAX_UPLOAD_MB"]))


@bp.errorhandler(Exception)
def _unexpected(err: Exception):
    # Logged with its traceback for operators; the client gets a fixed message.
    log.exception("unhandled error while serving a DeepStack request")
    return _error(500, ApiError.message)
