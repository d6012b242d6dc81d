"""Inference routes: each unpacks the request (api.parsing), calls the data plane
(dataplane.pipeline) and shapes its results (api.answers). Nothing else happens here."""
from __future__ import annotations

import functools
from typing import Callable

from flask import Blueprint, Response, current_app, request

from api import answers
from api.annotate import annotate
from api.parsing import bool_arg, float_arg, int_arg, list_arg, read_sources
from dataplane.pipeline import Pipeline
from errors import InvalidParameter

bp = Blueprint("inference", __name__)


def _pipeline() -> Pipeline:
    return current_app.extensions["pipeline"]


def _max_images() -> int:
    return current_app.extensions["settings"].max_request_images


def client_gone() -> Callable[[], bool]:
    """Whether this request's client has closed its connection (waitress tells; the test
    client never closes)."""
    return request.environ.get("waitress.client_disconnected") or (lambda: False)


def admitted(route):
    """Inference routes take an admission place first: 503 at once past the bounded queue, and
    the place given up as soon as the client has gone."""
    @functools.wraps(route)
    def wrapper(*args, **kwargs):
        settings = current_app.extensions["settings"]
        with current_app.extensions["admission"].admit(wait=settings.inference_timeout, gone=client_gone()):
            return route(*args, **kwargs)
    return wrapper


# --- v1: the shapes existing clients depend on ----------------------------------------------

@bp.post("/classify-image")
@admitted
def classify_image():
    top_k = int_arg("top_k", default=10, minimum=1, maximum=1000)
    slot, results = _pipeline().classify(read_sources(request, max_images=1), model=request.args.get("model"),
                                         top_k=top_k, route="/classify-image", gone=client_gone())
    return answers.v1_classification(answers.single(results, slot.name))


@bp.post("/detect-objects")
@admitted
def detect_objects():
    min_probability = float_arg("min_probability", default=30.0, minimum=0.0, maximum=100.0)
    slot, results = _pipeline().detect(read_sources(request, max_images=1), model=request.args.get("model"),
                                       min_score=min_probability / 100, max_detections=None, classes=None,
                                       route="/detect-objects", gone=client_gone())
    return answers.v1_detection(answers.single(results, slot.name))


# --- v2: JSON objects, batches, annotation --------------------------------------------------

@bp.post("/v2/classify")
@admitted
def classify_v2():
    top_k = int_arg("top_k", default=5, minimum=1, maximum=1000)
    min_score = float_arg("min_score", default=0.0, minimum=0.0, maximum=1.0)
    sources = read_sources(request, max_images=_max_images())
    slot, results = _pipeline().classify(sources, model=request.args.get("model"), top_k=top_k,
                                         route="/v2/classify", gone=client_gone())
    return answers.v2(slot.name, results, "predictions", lambda value: answers.v2_predictions(value, min_score))


@bp.post("/v2/detect")
@admitted
def detect_v2():
    min_score = float_arg("min_score", default=0.3, minimum=0.0, maximum=1.0)
    max_detections = int_arg("max_detections", default=None, minimum=1, maximum=10_000)
    classes = list_arg("classes")
    wants_image = bool_arg("annotate")
    sources = read_sources(request, max_images=_max_images())
    if wants_image and len(sources) != 1:
        raise InvalidParameter("'annotate=true' takes exactly one image.")
    slot, results = _pipeline().detect(sources, model=request.args.get("model"), min_score=min_score,
                                       max_detections=max_detections, classes=classes,
                                       route="/v2/detect", keep_images=wants_image, gone=client_gone())
    if not wants_image:
        return answers.v2(slot.name, results, "detections", answers.v2_detections)
    result = answers.single(results, slot.name)
    annotated = annotate(result.image, result.value, full_size=(result.width, result.height))
    result.image = None   # the full-size image: freed now, and its pages handed back when large
    _pipeline().after_images(result.width * result.height)
    response = Response(annotated.jpeg, mimetype="image/jpeg")
    response.headers["X-Detections"] = str(len(result.value))     # found
    response.headers["X-Detections-Drawn"] = str(annotated.drawn)
    response.headers["X-Annotated-Size"] = "{}x{}".format(*annotated.size)
    return response
