"""The data plane: one shape for every task.

sources → cache lookup (a cached URL is not fetched) → fetch and decode per image (a bad image
is that image's error) → one model call for the images left (`ModelSlot.predict`: micro-batching,
time limit and metrics wrapped there, once) → each task's postprocessing → cache store → usage
report and memory. Routes hand it sources and parameters and shape what it returns.

Every answer is checked against what the model and the request allow (`AnswerCheck`) before
anyone reads it: one from the cache (whoever can write to Redis writes it: a miss, counted as
garbage), and the model's own. A model's answer with a non-finite score, a label it does not
have or a box that is not inside the image is that image's InferenceFailed; one whose finite
scores leave [0, 1] (raw outputs of an engine, logits declared as probabilities) is served as
the model gave it but never cached (the cache trusts probabilities only), with one warning per
model. So nothing reaches the JSON encoder or the annotation that a model could not have
answered: no non-finite or out-of-range score, no unknown label or class id, no box outside the
image, no more rows than asked for.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
import numbers
import time
from typing import Any, Callable, Mapping

import numpy as np
from PIL import Image

from contract import CLASSIFICATION, DETECTION, FACE, STRETCH, Detection, Face
from dataplane.cache import ResultCache
from dataplane.fetch import Fetcher
from dataplane.images import ImageLimits, decode_image
from dataplane.report import UsageReport
from dataplane.sources import ImageSource
from errors import ApiError, InferenceFailed
from registry import ModelSlot, Registry

log = logging.getLogger(__name__)
# A detection's score may sit this far below the request's threshold: a model compares in float32.
SCORE_SLACK = 1e-6
PROBABILITY = (0.0, 1.0)             # the scores a cached answer may hold
FINITE = (-math.inf, math.inf)       # the scores a model's answer may hold (finite ones: see _score)


@dataclasses.dataclass
class ImageResult:
    key: str
    width: int | None = None
    height: int | None = None
    value: Any = None                 # classification: [(label, class_id, score)]; detection: [Detection]
    cached: bool = False
    error: ApiError | None = None
    image: Image.Image | None = None  # kept only when the caller needs the pixels (annotation)
    seconds: float = 0.0              # decoding plus this image's share of the model call
    inference_seconds: float = 0.0    # this image's share of the model call alone (0 on a cache hit)
    read: bool = False                # its bytes were uploaded, or its URL fetched and decoded (or cached)


@dataclasses.dataclass(frozen=True)
class Job:
    """One request's work for the pipeline, whatever the task."""
    task: str
    model: str | None          # a configured name, or None for the task's default
    params: tuple              # everything that changes the answer (part of the cache key)
    options: tuple             # what the model's predict() takes after the images
    finish: Callable[[ModelSlot, Any], Any]   # one image's raw model output -> its value
    route: str
    keep_images: bool = False
    gone: Callable[[], bool] = lambda: False   # has the client left? (its work is then dropped)
    cached: bool = True        # looked up in and stored to the result cache (faces and whole rows are not)


class Pipeline:
    def __init__(self, registry: Registry, cache: ResultCache, report: UsageReport,
                 fetcher: Fetcher, limits: ImageLimits, metrics=None,
                 after_images: Callable[[int], None] = lambda pixels: None):
        """`after_images(pixels)`: told the largest image a request decoded, once it is done
        (the serving layer hands freed memory back after large ones)."""
        self.registry, self.cache, self.report = registry, cache, report
        self.fetcher, self.limits, self.metrics = fetcher, limits, metrics
        self.after_images = after_images
        self._labels: dict[str, Mapping[str, frozenset]] = {}  # model -> label -> its class ids
        self._uncached: set[str] = set()  # models warned about: scores outside [0, 1]

    def classify(self, sources: list[ImageSource], *, model: str | None, top_k: int,
                 route: str, gone: Callable[[], bool] = lambda: False) -> tuple[ModelSlot, list[ImageResult]]:
        return self.run(Job(CLASSIFICATION, model, (top_k,), (), lambda slot, row: ranked(slot, row, top_k),
                            route, gone=gone), sources)

    def probabilities(self, sources: list[ImageSource], *, model: str | None, route: str,
                      gone: Callable[[], bool] = lambda: False) -> tuple[ModelSlot, list[ImageResult]]:
        """Classification: every class, ranked as classify() ranks them (the Open Inference
        Protocol answers the whole row). Never cached: a row of every class is no answer a
        cache entry may hold (a shared one holds at most 1,000 rows)."""
        slot = self.registry.for_task(CLASSIFICATION, model)
        every = len(slot.model.labels)
        return self.run(Job(CLASSIFICATION, slot.name, (every,), (), lambda slot, row: ranked(slot, row, every),
                            route, gone=gone, cached=False), sources)

    def detect(self, sources: list[ImageSource], *, model: str | None, min_score: float,
               max_detections: int | None, classes: frozenset[str] | None, route: str,
               keep_images: bool = False, gone: Callable[[], bool] = lambda: False
               ) -> tuple[ModelSlot, list[ImageResult]]:
        classes = frozenset(c.lower() for c in classes) if classes else None
        return self.run(Job(DETECTION, model, (min_score, max_detections, classes), (min_score,),
                            lambda slot, found: kept(found, classes, max_detections), route, keep_images,
                            gone), sources)

    def faces(self, sources: list[ImageSource], *, min_score: float, embed: bool, route: str,
              gone: Callable[[], bool] = lambda: False) -> tuple[ModelSlot, list[ImageResult]]:
        """Faces (contract.Face), largest first; with their embeddings when `embed`. Never cached."""
        return self.run(Job(FACE, None, (min_score, embed), (min_score, embed),
                            lambda slot, found: sorted(found, key=_area, reverse=True), route, gone=gone,
                            cached=False), sources)

    def run(self, job: Job, sources: list[ImageSource]) -> tuple[ModelSlot, list[ImageResult]]:
        slot = self.registry.for_task(job.task, job.model)
        key = (job.task, slot.name) + job.params
        stretch_to = slot.model.input_size if slot.model.resize_mode == STRETCH else None
        check = self._check(job, slot)
        with slot.expecting() as token:
            results, pending = self._prepare(sources, key if job.cached else None, job.keep_images, stretch_to, check)
            if pending:
                started = time.perf_counter()
                # The images are listed inside the call, so nothing here holds them afterwards.
                outputs = slot.predict([r.image for r in pending], *job.options, token=token, gone=job.gone)
                share = (time.perf_counter() - started) / len(pending)
                for result, output in zip(pending, outputs):
                    result.seconds += share
                    result.inference_seconds = share
                    if not job.keep_images:
                        result.image = None
                    self._answered(slot.name, check, key if job.cached else None, result, job.finish(slot, output))
        self._record(results, slot.name, job.route)
        return slot, results

    def _check(self, job: Job, slot: ModelSlot) -> "AnswerCheck":
        labels = self._labels.get(slot.name)
        if labels is None:  # once per model: its labels never change
            labels = self._labels[slot.name] = label_table(slot.model.labels, slot.model.class_ids)
        size = slot.model.embedding_size if job.task == FACE else None
        return AnswerCheck(job.task, job.params, labels, self.limits, embedding_size=size)

    def _answered(self, model: str, check: "AnswerCheck", key: tuple | None, result: ImageResult, value) -> None:
        """The model's answer for one image: cached (unless `key` is None) when a cached copy would
        pass the check, served uncached when only its scores leave [0, 1], and that image's error
        otherwise."""
        problem = check.problem(result.width, result.height, value)
        if problem is None:
            result.value = value
            if key is not None:
                self.cache.put(key + (result.key,), (result.width, result.height, value))
        elif dataclasses.replace(check, scores=FINITE).problem(result.width, result.height, value) is None:
            result.value = value
            if model not in self._uncached:
                self._uncached.add(model)
                log.warning("model '%s' answers scores outside [0, 1] (for a model folder of raw outputs, set "
                            "'output': 'logits'): its answers are served as it gives them, never cached", model)
        else:
            log.error("model '%s' answered outside its contract (%s): that image's answer is an error",
                      model, problem)
            result.error = InferenceFailed()

    def _prepare(self, sources, key, keep_images: bool, stretch_to, check):
        """Results from the cache (none when `key` is None), and the decoded images still to compute."""
        results, pending = [], []
        for source in sources:
            result = ImageResult(key=source.key, error=source.error, read=source.data is not None)
            results.append(result)
            if source.error is not None:
                continue
            cached = self.cache.get(key + (source.key,), check=check) if key is not None else None
            if self.metrics and key is not None:
                self.metrics.cache(cached is not None)
            if cached is not None:
                result.width, result.height, result.value = cached
                result.cached = result.read = True
                if not keep_images:
                    continue
            started = time.perf_counter()
            try:
                data = source.data if source.url is None else self.fetcher.fetch(source.url)
                decoded = decode_image(data, self.limits, size_hint=stretch_to)
            except ApiError as err:
                result.error = err
                continue
            finally:
                result.seconds = time.perf_counter() - started
            result.image, result.width, result.height = decoded.image, decoded.width, decoded.height
            result.read = True
            if not result.cached:
                pending.append(result)
        return results, pending

    def _record(self, results: list[ImageResult], model: str, route: str) -> None:
        """Every image counts for its model and route; only an image that was read gets an
        image key in the report: a URL that was refused or failed is a client's text, and
        recording it would let any client grow the report (and fill it with its own text)."""
        self.after_images(max(((r.width or 0) * (r.height or 0) for r in results if not r.cached), default=0))
        for result in results:
            self.report.record(image_key=result.key if result.read else None, model=model,
                               route=route, seconds=result.seconds, cache_hit=result.cached,
                               error=result.error is not None)


def ranked(slot: ModelSlot, row: np.ndarray, top_k: int) -> list[tuple[str, Any, float]]:
    """Classification: the top_k (label, class id, probability), highest first."""
    labels, class_ids = slot.model.labels, slot.model.class_ids
    return [(labels[i], class_ids[i], float(row[i])) for i in np.argsort(-row, kind="stable")[:top_k]]


def kept(found: list[Detection], classes: frozenset[str] | None, max_detections: int | None) -> list[Detection]:
    """Detection: the wanted classes, highest score first, at most max_detections."""
    found = sorted((d for d in found if classes is None or d.label.lower() in classes),
                   key=lambda d: d.score, reverse=True)
    return found[:max_detections] if max_detections else found


def _area(face: Face) -> int:
    x1, y1, x2, y2 = face.box
    return (x2 - x1) * (y2 - y1)


def label_table(labels, class_ids) -> dict[str, frozenset]:
    """label -> the class ids it names (ImageNet names two classes 'crane', two 'maillot')."""
    table = collections.defaultdict(set)
    for label, class_id in zip(labels, class_ids):
        table[label].add(class_id)
    return {label: frozenset(ids) for label, ids in table.items()}


@dataclasses.dataclass(frozen=True)
class AnswerCheck:
    """What one key's answer may hold: what the model could have answered for these parameters.
    `problem` says what is wrong (for the log), or None; calling it answers whether the
    (width, height, result) value passes (the cache's `check`)."""
    task: str
    params: tuple
    labels: Mapping[str, frozenset]
    limits: ImageLimits
    scores: tuple[float, float] = PROBABILITY
    embedding_size: int | None = None   # faces: the model's embedding size

    def __call__(self, value: tuple) -> bool:
        return self.problem(*value) is None

    def problem(self, width, height, result) -> str | None:
        if not (_whole(width) and _whole(height) and 0 < width <= self.limits.max_side
                and 0 < height <= self.limits.max_side and width * height <= self.limits.max_pixels):
            return "image size"
        if not isinstance(result, list):
            return "not a list"
        if self.task == CLASSIFICATION:
            return _classification_problem(result, self.labels, self.scores, top_k=self.params[0])
        if self.task == FACE:
            return _face_problem(result, self.scores, width, height, *self.params, size=self.embedding_size)
        min_score, max_detections, classes = self.params
        if max_detections and len(result) > max_detections:
            return "more detections than asked for"
        return _detection_problem(result, self.labels, self.scores, width, height, min_score, classes)


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _score(value, scores: tuple[float, float]) -> bool:
    """A finite number within `scores`."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            and scores[0] <= value <= scores[1])


def _classification_problem(rows: list, labels: Mapping[str, frozenset], scores: tuple[float, float],
                            top_k: int) -> str | None:
    """1 to top_k rows (the scene route reads row 0), each a label of the model with its own class
    id, once, scores within `scores`, highest first."""
    if not 1 <= len(rows) <= top_k:
        return f"{len(rows)} rows for top_k={top_k}"
    seen, last = set(), scores[1]
    for label, class_id, score in rows:
        if class_id not in labels.get(label, ()) or (label, class_id) in seen:
            return "a label or class id the model does not have, or one twice"
        if not _score(score, scores) or score > last:
            return "a score outside [0, 1], not finite or out of order"
        seen.add((label, class_id))
        last = score
    return None


def _detection_problem(found: list, labels: Mapping[str, frozenset], scores: tuple[float, float],
                       width: int, height: int, min_score: float, classes: frozenset[str] | None) -> str | None:
    """Detections of the model's (and the request's) classes, scores within `scores` and over
    min_score, highest first, boxes of whole pixels ordered and inside the image."""
    last = scores[1]
    for d in found:
        if not isinstance(d, Detection) or d.label not in labels or (classes and d.label.lower() not in classes):
            return "a label the model (or the request) does not have"
        if not _score(d.score, scores) or d.score < min_score - SCORE_SLACK or d.score > last:
            return "a score outside [min_score, 1], not finite or out of order"
        if not _inside(d.box, width, height):
            return "a box that is not inside the image"
        last = d.score
    return None


def _face_problem(found: list, scores: tuple[float, float], width: int, height: int, min_score: float,
                  embed: bool, size: int) -> str | None:
    """Faces with scores within `scores` and over min_score, boxes inside the image, and (when
    asked for) an embedding of the model's size of finite numbers."""
    for face in found:
        if not isinstance(face, Face) or not _score(face.score, scores) or face.score < min_score - SCORE_SLACK:
            return "a face with a score outside [min_score, 1] or not finite"
        if not _inside(face.box, width, height):
            return "a face box that is not inside the image"
        vector = face.embedding
        if embed and not (isinstance(vector, np.ndarray) and vector.shape == (size,) and np.isfinite(vector).all()):
            return "an embedding that is missing, of another size or not finite"
    return None


def _inside(box, width: int, height: int) -> bool:
    if not isinstance(box, (tuple, list)) or len(box) != 4 or not all(map(_whole, box)):
        return False
    x1, y1, x2, y2 = box
    return 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
