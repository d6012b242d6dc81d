"""A configured model's slot: loads its model exactly once (first use or preload) and runs every
model call the same way: micro-batched where the model batches, under the inference time limit,
timed for /metrics, failures turned into one API error. Readiness and /models read its state.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from typing import Callable

import psutil

from contract import FrameworksNeeded, Model, ModelUnavailable
from errors import ApiError, ClientGone, InferenceFailed, ModelNotReady
from registry.batching import MicroBatcher

log = logging.getLogger("registry")

NOT_LOADED, LOADING, READY, FAILED = "not_loaded", "loading", "ready", "failed"
STATES = (NOT_LOADED, LOADING, READY, FAILED)


@dataclasses.dataclass(frozen=True)
class CallPolicy:
    """How every model call runs: the time limit (a function that runs a callable under it), the
    metrics hook, and micro-batching of concurrent calls for models that batch."""
    limit: Callable[[Callable], object] = lambda function: function()
    observe: Callable[[str, float], None] = lambda model, seconds: None
    # Called on the request's thread just before it waits for a micro-batched call: the
    # request gives its processing place to the next one, which can then join the batch.
    on_batch_wait: Callable[[], None] = lambda: None
    max_batch_size: int = 8
    batch_timeout_ms: float = 5.0
    retry_seconds: float = 60.0   # a failed load is tried again after this long, not per request


# Loads run one at a time, so the resident memory a load adds is that model's own.
_load_lock = threading.Lock()


class ModelSlot:
    def __init__(self, model: Model, *, prepare: Callable[[], None] = lambda: None,
                 policy: CallPolicy = CallPolicy(), clock=time.monotonic):
        """`prepare()` imports the frameworks (every configured model's, in the one order that
        works; ModelUnavailable when one cannot be), run when a load says it needs them."""
        self.model = model
        self.name = model.name
        self.task = model.task
        self._prepare = prepare
        self._policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self.state = NOT_LOADED
        self.reason: str | None = None
        self.load_seconds: float | None = None
        self.memory_mb: float | None = None
        self._failed_at: float | None = None
        self._batcher = None

    # --- what /ready, /status and /models say ---------------------------------------------

    def status(self) -> dict:
        """The slot's state (/ready, /status)."""
        info = {"task": self.task, "state": self.state}
        if self.reason:
            info["reason"] = self.reason
        if self.load_seconds is not None:
            info["load_seconds"] = round(self.load_seconds, 3)
        if self.memory_mb is not None:
            info["memory_mb"] = round(self.memory_mb, 1)
        remote = self.model.remote_status()
        if remote:
            info["engine"] = remote
        return info

    @property
    def ready(self) -> bool:
        """Loaded, and for a model on a remote engine, the engine says it is ready."""
        if self.state != READY:
            return False
        remote = self.model.remote_status()
        return remote is None or remote["state"] == READY

    def details(self) -> dict:
        """The model's static facts and the slot's state (/models)."""
        size = self.model.input_size
        return {"name": self.name, "task": self.task, **self.model.describe(),
                "input_size": list(size) if size else None, "num_labels": len(self.model.labels),
                "runtime": self.model.runtime, "device": self.model.device, **self.status()}

    # --- loading ----------------------------------------------------------------------------

    def ensure_loaded(self) -> Model:
        """The loaded model, loading it first if needed. Raises ModelNotReady after a failure
        (tried again only after `retry_seconds`)."""
        if self.state == READY:
            return self.model
        with self._lock:
            if self.state != READY and not self._recently_failed():
                self._load()
        if self.state != READY:
            retry = str(int(self.retry_seconds))
            raise ModelNotReady(f"Model '{self.name}' failed to load: {self.reason}",
                                headers={"Retry-After": retry})
        return self.model

    @property
    def retry_seconds(self) -> float:
        return self.model.load_retry_seconds or self._policy.retry_seconds

    def _recently_failed(self) -> bool:
        return (self.state == FAILED
                and self._clock() - self._failed_at < self.retry_seconds)

    def _load(self) -> None:
        self.state, self.reason = LOADING, None
        log.info("loading %s model '%s'", self.task, self.name)
        with _load_lock:
            started = self._clock()
            try:
                rss_before = psutil.Process().memory_info().rss
                try:
                    self.model.load()
                except FrameworksNeeded:   # a conversion or a framework path: import them, then again
                    self._prepare()
                    rss_before = psutil.Process().memory_info().rss
                    self.model.load()
                rss_after = psutil.Process().memory_info().rss
            except ModelUnavailable as exc:  # a reason an operator acts on: no traceback to show
                self._fail(self.model.load_failure(exc))
                return
            except Exception as exc:
                log.exception("loading model '%s' failed", self.name)
                self._fail(self.model.load_failure(exc))
                return
        self.load_seconds = self._clock() - started
        self.memory_mb = max(0, rss_after - rss_before) / 2**20
        self._batcher = self._make_batcher()
        self.state = READY
        log.info("model '%s' ready in %.1f s, %.0f MB", self.name, self.load_seconds, self.memory_mb)

    def _fail(self, reason: str) -> None:
        self.state, self.reason, self._failed_at = FAILED, reason, self._clock()
        log.error("model '%s' is unavailable: %s", self.name, reason)

    def _make_batcher(self):
        if not self.model.batchable or self._policy.max_batch_size <= 1:
            return None
        return MicroBatcher(self.model.predict, self._policy.max_batch_size,
                            self._policy.batch_timeout_ms, name=self.name)

    # --- model calls ------------------------------------------------------------------------

    def expecting(self):
        """Announce a request that will call `predict` soon (it is decoding its images), so a
        forming micro-batch waits for it. Yields the token to pass to `predict`."""
        batcher = self._batcher
        return batcher.expecting() if batcher else contextlib.nullcontext()

    def predict(self, images: list, *options, token=None, gone: Callable[[], bool] = lambda: False):
        """The model's predict(images, *options), loaded first if needed, batched with
        concurrent calls where the model batches, under the time limit, timed. Never computed
        once `gone()` says the client has left (ClientGone)."""
        model = self.ensure_loaded()
        batcher = self._batcher
        if batcher is not None:
            self._policy.on_batch_wait()
            call = lambda: batcher.submit(images, token, options, gone)
        else:
            call = lambda: _unless_gone(gone, model.predict, images, *options)
        return self._called(call)

    def infer_tensors(self, batch, gone: Callable[[], bool] = lambda: False) -> list:
        """The model's network on a batch of its own input tensor (contract.Model.infer_tensors),
        loaded first if needed, under the time limit, timed; never micro-batched (a client's
        tensors are one call)."""
        model = self.ensure_loaded()
        return self._called(lambda: _unless_gone(gone, model.infer_tensors, batch))

    def _called(self, call: Callable[[], object]):
        """`call()` under the time limit, timed for /metrics, a failure turned into one API error."""
        started = time.perf_counter()
        try:
            return self._policy.limit(call)
        except ApiError:
            raise
        except Exception:
            log.exception("inference failed on model '%s'", self.name)
            raise InferenceFailed() from None
        finally:
            self._policy.observe(self.name, time.perf_counter() - started)


def _unless_gone(gone: Callable[[], bool], function, *args):
    """`function(*args)`, unless the client has gone while the call waited for a thread."""
    if gone():
        raise ClientGone()
    return function(*args)
