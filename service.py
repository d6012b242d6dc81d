"""The data plane: find the model, take results from the cache or compute them, record usage.

Routes hand it image sources and parameters and shape its results; it owns the order of work:
cache lookup (URLs are not fetched on a hit) → fetch/decode per image (a bad image is that
image's error) → one batched model call for a classifier → cache store → report and metrics.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from typing import Any

import numpy as np
from PIL import Image

import memory
from batching import MicroBatcher
from cache import ResultCache
from detectors.base import Detection
from errors import ApiError, InferenceFailed
from fetch import Fetcher
from images import ImageLimits, decode_image
from inputs import ImageSource
from model_manager import ModelManager, ModelSlot
from report import UsageReport

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ImageResult:
    key: str
    width: int | None = None
    height: int | None = None
    value: Any = None                # classification: [(label, class_id, score)]; detection: [Detection]
    cached: bool = False
    error: ApiError | None = None
    image: Image.Image | None = None  # kept only when the caller needs the pixels (annotation)
    seconds: float = 0.0


class InferenceService:
    def __init__(self, manager: ModelManager, cache: ResultCache, report: UsageReport,
                 fetcher: Fetcher, limits: ImageLimits, metrics=None, call=None,
                 max_batch_size: int = 8, batch_timeout_ms: float = 5.0):
        self.manager, self.cache, self.report = manager, cache, report
        self.fetcher, self.limits, self.metrics = fetcher, limits, metrics
        self._call = call or (lambda function: function())  # runs a model call (with its time limit)
        self.max_batch_size, self.batch_timeout_ms = max_batch_size, batch_timeout_ms
        self._batchers: dict[str, MicroBatcher] = {}
        self._batchers_lock = threading.Lock()

    # --- public ----------------------------------------------------------------------------

    def classify(self, sources: list[ImageSource], *, model: str | None, top_k: int,
                 route: str) -> tuple[ModelSlot, list[ImageResult]]:
        slot = self.manager.for_task("classification", model)
        params = ("classification", slot.name, top_k)
        batcher = self._batchers.get(slot.name)
        with batcher.expecting() if batcher else contextlib.nullcontext() as token:
            results, pending = self._from_cache(sources, params, keep_images=False,
                                                size_hint=self._size_hint(slot))
            if not pending:
                self._record(results, slot.name, route)
                return slot, results
            classifier = slot.get()
            batcher = batcher or self._batcher(slot.name, classifier)
            # The images are listed inside the call, so nothing here holds them afterwards:
            # _record gives their memory back to the system.
            if batcher:
                predict = lambda: batcher.submit([r.image for r in pending], token)
            else:
                predict = lambda: classifier.predict([r.image for r in pending])
            started = time.perf_counter()
            probabilities = self._run(slot, predict)
        labels = classifier.labels
        class_ids = getattr(classifier, "class_ids", None) or list(range(len(labels)))
        share = (time.perf_counter() - started) / len(pending)
        for result, row in zip(pending, probabilities):
            order = np.argsort(-row, kind="stable")[:top_k]
            result.value = [(labels[i], class_ids[i], float(row[i])) for i in order]
            result.seconds += share
            result.image = None
            self.cache.put(params + (result.key,), (result.width, result.height, result.value))
        self._record(results, slot.name, route)
        return slot, results

    def detect(self, sources: list[ImageSource], *, model: str | None, min_score: float,
               max_detections: int | None, classes: frozenset[str] | None, route: str,
               keep_images: bool = False) -> tuple[ModelSlot, list[ImageResult]]:
        slot = self.manager.for_task("detection", model)
        classes = frozenset(c.lower() for c in classes) if classes else None
        params = ("detection", slot.name, min_score, max_detections, classes)
        results, pending = self._from_cache(sources, params, keep_images=keep_images)
        if pending:
            detector = slot.get()
            for result in pending:
                started = time.perf_counter()
                found = self._run(slot, lambda image=result.image: detector.detect(image, min_score))
                result.seconds += time.perf_counter() - started
                found = sorted((d for d in found if classes is None or d.label.lower() in classes),
                               key=lambda d: d.score, reverse=True)
                result.value = found[:max_detections] if max_detections else found
                self.cache.put(params + (result.key,), (result.width, result.height, result.value))
                if not keep_images:
                    result.image = None
        self._record(results, slot.name, route)
        return slot, results

    # --- steps -----------------------------------------------------------------------------

    def _batcher(self, name: str, classifier) -> MicroBatcher | None:
        """The model's micro-batcher, made on first use, for models that batch."""
        if self.max_batch_size <= 1 or not getattr(classifier, "batchable", False):
            return None
        with self._batchers_lock:
            if name not in self._batchers:
                self._batchers[name] = MicroBatcher(classifier.predict, self.max_batch_size,
                                                    self.batch_timeout_ms, name=name)
            return self._batchers[name]

    def _size_hint(self, slot: ModelSlot) -> tuple[int, int] | None:
        """The classifier's input size when it stretches the whole image to it (so JPEGs
        may be decoded at a reduced scale); None otherwise."""
        model = slot.model
        if getattr(model, "resize_mode", None) != "stretch":
            return None
        return model.input_size

    def _from_cache(self, sources, params, *, keep_images: bool, size_hint=None):
        results, pending = [], []
        for source in sources:
            result = ImageResult(key=source.key)
            results.append(result)
            if source.error is not None:
                result.error = source.error
                continue
            cached = self.cache.get(params + (source.key,))
            if self.metrics:
                self.metrics.cache(cached is not None)
            if cached is not None:
                result.width, result.height, result.value = cached
                result.cached = True
                if not keep_images:
                    continue
            started = time.perf_counter()
            try:
                data = source.data if source.url is None else self.fetcher.fetch(source.url)
                decoded = decode_image(data, self.limits, size_hint=size_hint)
            except ApiError as err:
                result.error = err
                continue
            finally:
                result.seconds = time.perf_counter() - started
            result.image, result.width, result.height = decoded.image, decoded.width, decoded.height
            if not result.cached:
                pending.append(result)
        return results, pending

    def _run(self, slot: ModelSlot, call):
        started = time.perf_counter()
        try:
            return self._call(call)
        except ApiError:
            raise
        except Exception:
            log.exception("inference failed on model '%s'", slot.name)
            raise InferenceFailed() from None
        finally:
            if self.metrics:
                self.metrics.inference(slot.name, time.perf_counter() - started)

    def _record(self, results: list[ImageResult], model: str, route: str) -> None:
        if any((r.width or 0) * (r.height or 0) >= memory.LARGE_IMAGE_PIXELS and not r.cached for r in results):
            memory.release_free_memory()
        for result in results:
            self.report.record(image_key=None if result.key == "invalid" else result.key, model=model,
                               route=route, seconds=result.seconds, cache_hit=result.cached,
                               error=result.error is not None)


def detection_dict(d: Detection) -> dict:
    x1, y1, x2, y2 = d.box
    return {"label": d.label, "score": round(d.score, 4), "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}}
