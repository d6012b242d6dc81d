"""HTTP routes. Each one unpacks the request, asks the model manager for a model and shapes
the answer; decoding lives in `images`, loading in `model_manager`, models in their packages.
"""
from __future__ import annotations

import logging

import numpy as np
from flask import Blueprint, current_app, jsonify, request

from errors import (ApiError, InferenceFailed, InvalidParameter, MissingImage, ModelNotFound,
                    UnsupportedMediaType, error_body)
from images import DecodedImage, ImageLimits, decode_image

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)

CLASSIFICATION, DETECTION = "classification", "detection"
_ENABLE_VARIABLE = {CLASSIFICATION: "IMAGE_CLASSIFICATION_ENABLED",
                    DETECTION: "OBJECT_DETECTION_ENABLED"}


def _manager():
    return current_app.extensions["model_manager"]


def _settings():
    return current_app.extensions["settings"]


@bp.get("/health")
def health():
    # Liveness only: no lock, no model, nothing that can wait behind inference.
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    manager = _manager()
    models = manager.describe()
    if manager.ready:
        return jsonify(status="ready", models=models)
    body = error_body(503, "not_ready", "Not every enabled model is loaded yet.")
    body.update(status="not_ready", models=models)
    return jsonify(body), 503


@bp.get("/status")
def status():
    manager = _manager()
    features = {}
    for task in (CLASSIFICATION, DETECTION):
        names = manager.by_task.get(task, [])
        if names:
            features[task] = {"enabled": True, "model": names[0], "models": names}
        else:
            features[task] = {"enabled": False, "model": None, "models": [],
                              "enable_with": f"{_ENABLE_VARIABLE[task]}=true"}
    return jsonify(features=features, models=manager.describe(), ready=manager.ready)


@bp.get("/models")
def list_models():
    return jsonify(models=[slot.info() for slot in _manager().slots.values()])


@bp.get("/models/<name>")
def model_info(name: str):
    return jsonify(_named_slot(name).info())


@bp.get("/models/<name>/labels")
def model_labels(name: str):
    return jsonify(name=name, labels=_named_slot(name).model.labels)


def _named_slot(name: str):
    manager = _manager()
    slot = manager.slot(name)
    if slot is None:
        names = list(manager.slots)
        raise ModelNotFound(f"Model '{name}' is not configured; configured: {', '.join(names) or 'none'}.",
                            details={"configured": names})
    return slot


@bp.post("/classify-image")
def classify_image():
    slot = _manager().for_task(CLASSIFICATION, request.args.get("model"))
    top_k = _int_arg("top_k", default=10, minimum=1, maximum=1000)
    image = _uploaded_image()
    model = slot.get()
    probabilities = _infer(lambda: model.predict([image.image]))[0]
    labels = model.labels
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    return jsonify([[labels[i], round(float(probabilities[i]) * 100, 2)] for i in order])


@bp.post("/detect-objects")
def detect_objects():
    slot = _manager().for_task(DETECTION, request.args.get("model"))
    min_probability = _float_arg("min_probability", default=30.0, minimum=0.0, maximum=100.0)
    image = _uploaded_image()
    model = slot.get()
    detections = _infer(lambda: model.detect(image.image, min_probability / 100.0))
    detections = sorted(detections, key=lambda d: d.score, reverse=True)
    return jsonify([
        {"name": d.label, "percentage_probability": round(d.score * 100, 2),
         "box_points": list(d.box)}
        for d in detections
    ])


def _uploaded_image() -> DecodedImage:
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType(
            "Send the image as multipart/form-data with a file field named 'image' "
            "(curl -F image=@photo.jpg)."
        )
    upload = request.files.get("image")
    if upload is None:
        raise MissingImage()
    data = upload.read()
    settings = _settings()
    return decode_image(data, ImageLimits(settings.max_image_pixels, settings.max_image_side))


def _infer(run):
    try:
        return run()
    except ApiError:
        raise
    except Exception:
        log.exception("inference failed")
        raise InferenceFailed() from None


def _int_arg(name: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(f"'{name}' must be a whole number from {minimum} to {maximum}.") from None
    if not minimum <= value <= maximum:
        raise InvalidParameter(f"'{name}' must be from {minimum} to {maximum}.")
    return value


def _float_arg(name: str, *, default: float, minimum: float, maximum: float) -> float:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidParameter(f"'{name}' must be a number from {minimum:g} to {maximum:g}.") from None
    if not minimum <= value <= maximum:  # also refuses nan
        raise InvalidParameter(f"'{name}' must be from {minimum:g} to {maximum:g}.")
    return value
