"""Owns the configured models: lazy loading exactly once, readiness, and failed loads.

A slot loads its model on first use (or at start-up with PRELOAD_MODELS) under a lock, so
requests that arrive together wait for one load. A failed load is remembered with its
reason and tried again only after `retry_seconds`, never in a tight loop per request.
Nothing here is touched by /health.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Iterable

import psutil

import frameworks
from errors import FeatureDisabled, ModelNotFound, ModelNotReady
from models.custom_spec import SpecError
from models.weights import WeightsUnavailable

log = logging.getLogger(__name__)

NOT_LOADED, LOADING, READY, FAILED = "not_loaded", "loading", "ready", "failed"

# Loads run one at a time, so the resident memory a load adds is that model's own.
_load_lock = threading.Lock()


class ModelSlot:
    def __init__(self, task: str, model, *, needed_frameworks: set[str],
                 retry_seconds: float = 60.0, clock=time.monotonic):
        self.task = task
        self.model = model
        self.name = model.name
        self._needed_frameworks = needed_frameworks
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self.state = NOT_LOADED
        self.reason: str | None = None
        self.load_seconds: float | None = None
        self.memory_mb: float | None = None
        self._failed_at: float | None = None

    def describe(self) -> dict:
        info = {"task": self.task, "state": self.state}
        if self.reason:
            info["reason"] = self.reason
        if self.load_seconds is not None:
            info["load_seconds"] = round(self.load_seconds, 3)
        if self.memory_mb is not None:
            info["memory_mb"] = round(self.memory_mb, 1)
        return info

    def info(self) -> dict:
        """What /models says of the model: static facts and the current state."""
        size = self.model.input_size
        return {"name": self.name, "task": self.task, **self.model.describe(),
                "input_size": list(size) if size else None, "num_labels": len(self.model.labels),
                **self.describe()}

    def get(self):
        """The loaded model; loads it first if needed. Raises ModelNotReady after a failure."""
        if self.state == READY:
            return self.model
        with self._lock:
            if self.state == READY:
                return self.model
            if self.state == FAILED and self._clock() - self._failed_at < self._retry_seconds:
                raise ModelNotReady(f"Model '{self.name}' failed to load: {self.reason}",
                                    headers={"Retry-After": str(int(self._retry_seconds))})
            self._load()
        if self.state != READY:
            raise ModelNotReady(f"Model '{self.name}' failed to load: {self.reason}",
                                headers={"Retry-After": str(int(self._retry_seconds))})
        return self.model

    def _load(self) -> None:
        self.state, self.reason = LOADING, None
        log.info("loading %s model '%s'", self.task, self.name)
        with _load_lock:
            started = self._clock()
            try:
                frameworks.require(self._needed_frameworks)
                rss_before = psutil.Process().memory_info().rss
                self.model.load()
                rss_after = psutil.Process().memory_info().rss
            except WeightsUnavailable as exc:
                self._fail(str(exc))
                return
            except SpecError as exc:
                self._fail(str(exc))
                return
            except Exception as exc:
                log.exception("loading model '%s' failed", self.name)
                self._fail(_describe_load_error(self.model, exc))
                return
        self.load_seconds = self._clock() - started
        self.memory_mb = max(0, rss_after - rss_before) / 2**20
        self.state = READY
        log.info("model '%s' ready in %.1f s, %.0f MB", self.name, self.load_seconds, self.memory_mb)

    def _fail(self, reason: str) -> None:
        self.state, self.reason, self._failed_at = FAILED, reason, self._clock()
        log.error("model '%s' is unavailable: %s", self.name, reason)


def _describe_load_error(model, exc: Exception) -> str:
    weights = getattr(model, "weights_file", None)
    if weights is not None:
        return (f"the weights file {weights.filename} in MODELS_DIR/{weights.subdir} could not "
                f"be loaded ({type(exc).__name__}); it may be truncated or corrupt: delete it "
                f"and fetch it again with `{weights.fetch_command}`")
    spec = getattr(model, "spec", None)
    if spec is not None and hasattr(spec, "folder"):
        return (f"the model file MODELS_DIR/{model.name}/{spec.file} could not be loaded "
                f"({type(exc).__name__}); check it with `python -m models.check MODELS_DIR/{model.name}`")
    return f"the model could not be loaded ({type(exc).__name__})"


ENABLE_VARIABLE = {"classification": "IMAGE_CLASSIFICATION_ENABLED",
                   "detection": "OBJECT_DETECTION_ENABLED"}


class ModelManager:
    """Slots by name; per task, the configured order (the first is the default)."""

    def __init__(self, slots: Iterable[ModelSlot]):
        self.slots: dict[str, ModelSlot] = {}
        self.by_task: dict[str, list[str]] = {}
        for slot in slots:
            self.slots[slot.name] = slot
            self.by_task.setdefault(slot.task, []).append(slot.name)

    def slot(self, name: str) -> ModelSlot | None:
        return self.slots.get(name)

    def for_task(self, task: str, name: str | None = None) -> ModelSlot:
        """The named model of a task, or its default; 403 if the task is off, 404 if unknown."""
        names = self.by_task.get(task)
        if not names:
            raise FeatureDisabled(f"{task.capitalize()} is disabled on this service; it is enabled "
                                  f"with {ENABLE_VARIABLE[task]}=true.")
        if name is None or name == "":
            return self.slots[names[0]]
        if name not in names:
            raise ModelNotFound(f"Model '{name}' is not configured for {task}; configured: "
                                f"{', '.join(names)}.", details={"configured": names})
        return self.slots[name]

    @property
    def ready(self) -> bool:
        return all(slot.state == READY for slot in self.slots.values())

    def describe(self) -> dict:
        return {slot.name: slot.describe() for slot in self.slots.values()}

    def preload_in_background(self) -> threading.Thread:
        def run():
            for slot in self.slots.values():
                try:
                    slot.get()
                except ModelNotReady:
                    pass  # already logged with its reason; /ready reports it
        thread = threading.Thread(target=run, name="model-preload", daemon=True)
        thread.start()
        return thread
