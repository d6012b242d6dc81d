"""HTTP routes. Each unpacks the request, calls the data plane (`service`) and shapes the
answer; decoding lives in `images`, fetching in `fetch`, loading in `model_manager`."""
from __future__ import annotations

import functools

from flask import Blueprint, Response, current_app, jsonify, request

from annotate import annotate
from errors import InvalidParameter, ModelNotFound, error_body
from inputs import read_sources
from middleware import log_fields
from model_manager import ENABLE_VARIABLE
from params import bool_arg, float_arg, int_arg, list_arg
from service import InferenceService, detection_dict

bp = Blueprint("api", __name__)

CLASSIFICATION, DETECTION = "classification", "detection"


def _manager():
    return current_app.extensions["model_manager"]


def _service() -> InferenceService:
    return current_app.extensions["inference"]


def _max_batch() -> int:
    return current_app.extensions["settings"].max_batch


# --- operations ------------------------------------------------------------------------------

@bp.get("/health")
def health():
    # Liveness only: no lock, no model, nothing that can wait behind inference.
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    manager, lifecycle = _manager(), current_app.extensions["lifecycle"]
    models = manager.describe()
    if lifecycle.draining.is_set():
        body = error_body(503, "shutting_down", "The service is shutting down.")
    elif not lifecycle.healthy_capacity:
        body = error_body(503, "inference_stuck", "Model calls are stuck past the time limit.")
    elif not manager.ready:
        body = error_body(503, "not_ready", "Not every enabled model is loaded yet.")
    else:
        return jsonify(status="ready", models=models)
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
                              "enable_with": f"{ENABLE_VARIABLE[task]}=true"}
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


def admitted(route):
    """Inference routes take an admission place first: 503 at once past the bounded queue."""
    @functools.wraps(route)
    def wrapper(*args, **kwargs):
        with current_app.extensions["lifecycle"].admit():
            return route(*args, **kwargs)
    return wrapper


# --- v1: the shapes existing clients depend on ----------------------------------------------

@bp.post("/classify-image")
@admitted
def classify_image():
    top_k = int_arg("top_k", default=10, minimum=1, maximum=1000)
    slot, results = _service().classify(read_sources(request, batch=False, max_batch=1),
                                        model=request.args.get("model"), top_k=top_k,
                                        route="/classify-image")
    result = _single(results, slot.name)
    return jsonify([[label, round(score * 100, 2)] for label, _, score in result.value])


@bp.post("/detect-objects")
@admitted
def detect_objects():
    min_probability = float_arg("min_probability", default=30.0, minimum=0.0, maximum=100.0)
    slot, results = _service().detect(read_sources(request, batch=False, max_batch=1),
                                      model=request.args.get("model"), min_score=min_probability / 100,
                                      max_detections=None, classes=None, route="/detect-objects")
    result = _single(results, slot.name)
    return jsonify([{"name": d.label, "percentage_probability": round(d.score * 100, 2),
                     "box_points": list(d.box)} for d in result.value])


def _single(results, model: str):
    result = results[0]
    log_fields(model=model, images=1, image_size=_size(result), cache_hit=result.cached,
               processing_ms=round(result.seconds * 1000, 2))
    if result.error is not None:
        raise result.error
    return result


def _size(result) -> str | None:
    return f"{result.width}x{result.height}" if result.width else None


# --- v2: JSON objects, batches, annotation --------------------------------------------------

@bp.post("/v2/classify")
@admitted
def classify_v2():
    top_k = int_arg("top_k", default=5, minimum=1, maximum=1000)
    min_score = float_arg("min_score", default=0.0, minimum=0.0, maximum=1.0)
    sources = read_sources(request, batch=True, max_batch=_max_batch())
    slot, results = _service().classify(sources, model=request.args.get("model"), top_k=top_k,
                                        route="/v2/classify")
    return _v2_answer(slot.name, results, "predictions", lambda value: [
        {"label": label, "class_id": class_id, "score": round(score, 4)}
        for label, class_id, score in value if score >= min_score])


@bp.post("/v2/detect")
@admitted
def detect_v2():
    min_score = float_arg("min_score", default=0.3, minimum=0.0, maximum=1.0)
    max_detections = int_arg("max_detections", default=None, minimum=1, maximum=10_000)
    classes = list_arg("classes")
    wants_image = bool_arg("annotate")
    sources = read_sources(request, batch=True, max_batch=_max_batch())
    if wants_image and len(sources) != 1:
        raise InvalidParameter("'annotate=true' takes exactly one image.")
    slot, results = _service().detect(sources, model=request.args.get("model"), min_score=min_score,
                                      max_detections=max_detections, classes=classes,
                                      route="/v2/detect", keep_images=wants_image)
    if wants_image:
        _log_batch(slot.name, results)
        result = results[0]
        if result.error is not None:
            raise result.error
        response = Response(annotate(result.image, result.value), mimetype="image/jpeg")
        response.headers["X-Detections"] = str(len(result.value))
        return response
    return _v2_answer(slot.name, results, "detections", lambda value: [detection_dict(d) for d in value])


def _v2_answer(model: str, results, key: str, shape):
    """One entry per image, in order: its result, or its error. A request with one image
    answers that image's error status instead."""
    _log_batch(model, results)
    if len(results) == 1 and results[0].error is not None:
        raise results[0].error
    entries = [error_body(r.error.code, r.error.type, r.error.message) if r.error is not None
               else {"width": r.width, "height": r.height, "cached": r.cached, key: shape(r.value)}
               for r in results]
    return jsonify(model=model, cached=all(r.cached for r in results), results=entries)


def _log_batch(model: str, results) -> None:
    log_fields(model=model, images=len(results),
               image_size=",".join(filter(None, (_size(r) for r in results))) or None,
               cache_hit=[r.cached for r in results] if len(results) > 1 else results[0].cached,
               errors=sum(r.error is not None for r in results),
               processing_ms=round(sum(r.seconds for r in results) * 1000, 2))
