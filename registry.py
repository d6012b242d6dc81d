"""The one registry of models: the table of tasks, the configured models' slots, lookup by name.

`TASKS` holds each task's facts once (its variables, built-in names, how a built-in model or a
user's model folder of that task is made); configuration, the app factory, readiness, the
routes and the errors all read it. A `ModelSlot` loads its model exactly once (first use or
preload) and runs every model call the same way: micro-batched where the model batches, under
the inference time limit, timed for /metrics, failures turned into one API error.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import psutil

from contract import CLASSIFICATION, DETECTION, Model
from errors import ApiError, ClientGone, FeatureDisabled, InferenceFailed, ModelNotFound, ModelNotReady
from models.folder_spec import SpecError, load_spec
from models.weights import WeightsUnavailable
from runtimes import frameworks
from runtimes.remote import EngineProblem

log = logging.getLogger(__name__)

NOT_LOADED, LOADING, READY, FAILED = "not_loaded", "loading", "ready", "failed"
STATES = (NOT_LOADED, LOADING, READY, FAILED)


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    enable_variable: str
    model_variable: str
    builtins: tuple[str, ...]       # public names of the built-in models; the first is the default
    builtin_factory: str            # "module:function(name, models_dir, download) -> Model"
    folder_factory: str             # "module:class(spec) -> Model" for MODELS_DIR/<name>/ folders
    enable_alias: str | None = None

    @property
    def default_model(self) -> str:
        return self.builtins[0]

    @property
    def disabled_message(self) -> str:
        return (f"{self.name.capitalize()} is disabled on this service; it is enabled with "
                f"{self.enable_variable}=true.")


TASKS: dict[str, Task] = {t.name: t for t in (
    Task(CLASSIFICATION, "IMAGE_CLASSIFICATION_ENABLED", "IMAGE_CLASSIFICATION_MODEL",
         ("mobilenet", "resnet", "inception", "densenet"),
         "classifiers.keras_applications:create", "classifiers.folder:FolderClassifier",
         enable_alias="IMAGE_CLASSIFICATION"),
    Task(DETECTION, "OBJECT_DETECTION_ENABLED", "OBJECT_DETECTION_MODEL",
         ("yolo", "tiny_yolo", "retina"),
         "detectors.imageai_detectors:create", "detectors.folder:FolderDetector"),
)}


def _resolve(reference: str):
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def create_model(task: str, name: str, models_dir: Path, download: bool = True,
                 allow_hosts: frozenset[str] = frozenset()) -> Model:
    """A model instance, not loaded: a built-in by name, else the user's folder MODELS_DIR/<name>
    (`allow_hosts`, FETCH_ALLOW_HOSTS: remote engine hosts the address policy lets through)."""
    entry = TASKS[task]
    if name in entry.builtins:
        return _resolve(entry.builtin_factory)(name, Path(models_dir), download)
    spec = load_spec(Path(models_dir) / name, allow_hosts)
    if spec.task != task:
        raise SpecError([f"{spec.where}: 'task' is {spec.task!r}, but the model is configured "
                         f"in {entry.model_variable}"])
    return _resolve(entry.folder_factory)(spec)


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
    def __init__(self, model: Model, *, needed_frameworks: Iterable[str] = (),
                 policy: CallPolicy = CallPolicy(), clock=time.monotonic):
        self.model = model
        self.name = model.name
        self.task = model.task
        self._needed_frameworks = set(needed_frameworks) | set(model.frameworks)
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
                frameworks.require(self._needed_frameworks)
            except Exception as exc:  # an import failed: say which, never blame the weights
                log.exception("importing the frameworks for model '%s' failed", self.name)
                self._fail(frameworks.import_failure(exc))
                return
            try:
                rss_before = psutil.Process().memory_info().rss
                self.model.load()
                rss_after = psutil.Process().memory_info().rss
            except (WeightsUnavailable, SpecError) as exc:
                self._fail(str(exc))
                return
            except EngineProblem as exc:  # a remote engine that is down: no traceback to show
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
        from dataplane.batching import MicroBatcher
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


class Registry:
    """Slots by name; per task, the configured order (the first is the task's default)."""

    def __init__(self, slots: Iterable[ModelSlot]):
        self.slots: dict[str, ModelSlot] = {}
        self.by_task: dict[str, list[str]] = {}
        for slot in slots:
            self.slots[slot.name] = slot
            self.by_task.setdefault(slot.task, []).append(slot.name)

    def get(self, name: str) -> ModelSlot:
        """The named model, whatever its task; ModelNotFound names the configured ones."""
        slot = self.slots.get(name)
        if slot is None:
            raise ModelNotFound.naming(name, list(self.slots))
        return slot

    def for_task(self, task: str, name: str | None = None) -> ModelSlot:
        """The named model of a task, or its default; 403 if the task is off, 404 if unknown."""
        names = self.by_task.get(task)
        if not names:
            raise FeatureDisabled(TASKS[task].disabled_message)
        if not name:
            return self.slots[names[0]]
        if name not in names:
            raise ModelNotFound.naming(name, names, task=task)
        return self.slots[name]

    @property
    def ready(self) -> bool:
        return all(slot.ready for slot in self.slots.values())

    def status(self) -> dict:
        return {slot.name: slot.status() for slot in self.slots.values()}

    def wait_until_tried(self, timeout: float, poll: float = 0.05) -> bool:
        """Block until every model was tried once, loaded or failed (preloading), or `timeout`
        seconds pass; whether they were."""
        deadline = time.monotonic() + timeout
        while any(slot.state in (NOT_LOADED, LOADING) for slot in self.slots.values()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True

    def preload_in_background(self) -> threading.Thread:
        def run():
            pending = list(self.slots.values())
            while pending:
                for slot in pending:
                    with contextlib.suppress(ModelNotReady):  # logged with its reason; /ready shows it
                        slot.ensure_loaded()
                # Models that retry by themselves (remote engines) are tried until they load.
                pending = [s for s in pending if s.state == FAILED and s.model.load_retry_seconds]
                if pending:
                    time.sleep(min(s.retry_seconds for s in pending))
        thread = threading.Thread(target=run, name="model-preload", daemon=True)
        thread.start()
        return thread
