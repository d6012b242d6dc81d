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

import frameworks
from errors import ModelNotReady
from models.weights import WeightsUnavailable

log = logging.getLogger(__name__)

NOT_LOADED, LOADING, READY, FAILED = "not_loaded", "loading", "ready", "failed"


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
        self._failed_at: float | None = None

    def describe(self) -> dict:
        info = {"task": self.task, "state": self.state}
        if self.reason:
            info["reason"] = self.reason
        if self.load_seconds is not None:
            info["load_seconds"] = round(self.load_seconds, 3)
        return info

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
        started = self._clock()
        log.info("loading %s model '%s'", self.task, self.name)
        try:
            frameworks.require(self._needed_frameworks)
            self.model.load()
        except WeightsUnavailable as exc:
            self._fail(str(exc))
        except Exception as exc:
            log.exception("loading model '%s' failed", self.name)
            self._fail(_describe_load_error(self.model, exc))
        else:
            self.load_seconds = self._clock() - started
            self.state = READY
            log.info("model '%s' ready in %.1f s", self.name, self.load_seconds)

    def _fail(self, reason: str) -> None:
        self.state, self.reason, self._failed_at = FAILED, reason, self._clock()
        log.error("model '%s' is unavailable: %s", self.name, reason)


def _describe_load_error(model, exc: Exception) -> str:
    weights = getattr(model, "weights_file", None)
    if weights is not None:
        return (f"the weights file {weights.filename} in MODELS_DIR/{weights.subdir} could not "
                f"be loaded ({type(exc).__name__}); it may be truncated or corrupt: delete it "
                f"and fetch it again with `{weights.fetch_command}`")
    return f"the model could not be loaded ({type(exc).__name__})"


class ModelManager:
    def __init__(self, slots: Iterable[ModelSlot]):
        self.slots = {slot.task: slot for slot in slots}

    def slot(self, task: str) -> ModelSlot | None:
        return self.slots.get(task)

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
