"""The one registry of models: the configured models' slots, looked up by name or by task.

The layer below the data plane and above the model families: `tasks` (the table of tasks and
`create_model`), `slot` (ModelSlot: load once, readiness, batching, time limit and metrics
around every model call), `batching` (micro-batching, owned by the slot).
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Iterable

from errors import FeatureDisabled, ModelNotFound, ModelNotReady
from registry.slot import FAILED, LOADING, NOT_LOADED, READY, STATES, CallPolicy, ModelSlot
from registry.tasks import TASKS, Task, create_model, resolve

log = logging.getLogger("registry")

__all__ = ["FAILED", "LOADING", "NOT_LOADED", "READY", "STATES", "TASKS", "CallPolicy", "ModelSlot", "Registry",
           "Task", "create_model", "resolve"]


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
