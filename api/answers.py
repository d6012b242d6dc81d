"""Answer shapes: what each route family returns for the data plane's results, and the
fields the access log line carries. Per-image errors are raised or listed here, in one place."""
from __future__ import annotations

import logging

from flask import Response, g, jsonify
from flask.json.provider import DefaultJSONProvider

from api.errors import error_body
from api.middleware import log_fields
from contract import Detection
from dataplane.pipeline import ImageResult
from errors import NonFiniteResult

log = logging.getLogger(__name__)


class FiniteJSONProvider(DefaultJSONProvider):
    """The app's JSON (app.json): Python's encoder writes NaN and infinities as the bare tokens
    NaN / Infinity, which are not JSON, and a strict client fails on the whole answer. Here such
    an answer is refused and becomes a 500 JSON error instead (views build their answers with
    jsonify, so the refusal reaches the error handlers of their own route family)."""

    def dumps(self, obj, **kwargs) -> str:
        kwargs["allow_nan"] = False
        try:
            return super().dumps(obj, **kwargs)
        except ValueError as exc:
            if "Out of range float" not in str(exc):
                raise
            log.warning("an answer held NaN or an infinity; answered 500 instead")
            raise NonFiniteResult() from None


def single(results: list[ImageResult], model: str) -> ImageResult:
    """A one-image request's result; its error is the request's error."""
    log_batch(model, results)
    result = results[0]
    if result.error is not None:
        raise result.error
    return result


def v1_classification(result: ImageResult) -> Response:
    return jsonify([[label, round(score * 100, 2)] for label, _, score in result.value])


def v1_detection(result: ImageResult) -> Response:
    return jsonify([{"name": d.label, "percentage_probability": round(d.score * 100, 2), "box_points": list(d.box)}
                    for d in result.value])


def v2(model: str, results: list[ImageResult], key: str, shape):
    """One entry per image, in order: its result, or its error. A request with one image
    answers that image's error status instead."""
    if len(results) == 1:
        single(results, model)
    else:
        log_batch(model, results)
    entries = [error_body(r.error.code, r.error.type, r.error.message) if r.error is not None
               else {"width": r.width, "height": r.height, "cached": r.cached, key: shape(r.value)}
               for r in results]
    return jsonify(model=model, cached=all(r.cached for r in results), results=entries)


def v2_predictions(value, min_score: float) -> list[dict]:
    return [{"label": label, "class_id": class_id, "score": round(score, 4)}
            for label, class_id, score in value if score >= min_score]


def v2_detections(value: list[Detection]) -> list[dict]:
    return [detection_dict(d) for d in value]


def detection_dict(d: Detection) -> dict:
    x1, y1, x2, y2 = d.box
    return {"label": d.label, "score": round(d.score, 4), "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}}


def log_batch(model: str, results: list[ImageResult]) -> None:
    """The access log's fields and the answer's Server-Timing figures (written by the middleware,
    which adds the request's total): every inference answer goes through here, errors too."""
    g.server_timing = (sum(r.seconds - r.inference_seconds for r in results),
                       sum(r.inference_seconds for r in results))
    sizes = [f"{r.width}x{r.height}" for r in results if r.width]
    log_fields(model=model, images=len(results), image_size=",".join(sizes) or None,
               cache_hit=[r.cached for r in results] if len(results) > 1 else results[0].cached,
               errors=sum(r.error is not None for r in results),
               processing_ms=round(sum(r.seconds for r in results) * 1000, 2))
