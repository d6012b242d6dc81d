"""The data plane: one shape for every task.

sources → cache lookup (a cached URL is not fetched) → fetch and decode per image (a bad image
is that image's error) → one model call for the images left (`ModelSlot.predict`: micro-batching,
time limit and metrics wrapped there, once) → each task's postprocessing → cache store → usage
report and memory. Routes hand it sources and parameters and shape what it returns.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np
from PIL import Image

from contract import CLASSIFICATION, DETECTION, STRETCH, Detection
from dataplane.cache import ResultCache
from dataplane.fetch import Fetcher
from dataplane.images import ImageLimits, decode_image
from dataplane.report import UsageReport
from dataplane.sources import ImageSource
from errors import ApiError
from registry import ModelSlot, Registry
from serving import memory


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


class Pipeline:
    def __init__(self, registry: Registry, cache: ResultCache, report: UsageReport,
                 fetcher: Fetcher, limits: ImageLimits, metrics=None):
        self.registry, self.cache, self.report = registry, cache, report
        self.fetcher, self.limits, self.metrics = fetcher, limits, metrics

    def classify(self, sources: list[ImageSource], *, model: str | None, top_k: int,
                 route: str) -> tuple[ModelSlot, list[ImageResult]]:
        return self.run(Job(CLASSIFICATION, model, (top_k,), (), lambda slot, row: ranked(slot, row, top_k),
                            route), sources)

    def detect(self, sources: list[ImageSource], *, model: str | None, min_score: float,
               max_detections: int | None, classes: frozenset[str] | None, route: str,
               keep_images: bool = False) -> tuple[ModelSlot, list[ImageResult]]:
        classes = frozenset(c.lower() for c in classes) if classes else None
        return self.run(Job(DETECTION, model, (min_score, max_detections, classes), (min_score,),
                            lambda slot, found: kept(found, classes, max_detections), route, keep_images),
                        sources)

    def run(self, job: Job, sources: list[ImageSource]) -> tuple[ModelSlot, list[ImageResult]]:
        slot = self.registry.for_task(job.task, job.model)
        key = (job.task, slot.name) + job.params
        stretch_to = slot.model.input_size if slot.model.resize_mode == STRETCH else None
        with slot.expecting() as token:
            results, pending = self._prepare(sources, key, job.keep_images, stretch_to)
            if pending:
                started = time.perf_counter()
                # The images are listed inside the call, so nothing here holds them afterwards.
                outputs = slot.predict([r.image for r in pending], *job.options, token=token)
                share = (time.perf_counter() - started) / len(pending)
                for result, output in zip(pending, outputs):
                    result.value = job.finish(slot, output)
                    result.seconds += share
                    result.inference_seconds = share
                    if not job.keep_images:
                        result.image = None
                    self.cache.put(key + (result.key,), (result.width, result.height, result.value))
        self._record(results, slot.name, job.route)
        return slot, results

    def _prepare(self, sources, key, keep_images: bool, stretch_to):
        """Results from the cache, and the decoded images still to compute."""
        results, pending = [], []
        for source in sources:
            result = ImageResult(key=source.key, error=source.error, read=source.data is not None)
            results.append(result)
            if source.error is not None:
                continue
            cached = self.cache.get(key + (source.key,))
            if self.metrics:
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
        if any((r.width or 0) * (r.height or 0) >= memory.LARGE_IMAGE_PIXELS and not r.cached for r in results):
            memory.release_free_memory()
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
