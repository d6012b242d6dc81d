"""Admission and model-call time limits: what keeps the service answering under overload,
hung models and SIGTERM.

- `Admission`: at most `workers` requests are processed (decoded, prepared) at once and at most
  `max_queue` more wait; past that a request gets 503 with Retry-After at once, instead of
  waitress' unbounded queue. A request that starts waiting for a micro-batched model call
  hands its place back (`hand_back`), so the next admitted request can decode meanwhile and
  join the same batch: with the defaults a batch can fill to MAX_BATCH_SIZE, not only to
  WAITRESS_THREADS. While draining (SIGTERM/SIGINT) new inference is refused at once.
- `TimeLimit`: a model call that exceeds `timeout` answers 504 and the request's capacity comes
  back. The stuck call keeps its executor thread until it returns; when as many calls are stuck
  as there are workers, readiness turns 503 so the orchestrator replaces the instance.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from typing import Callable

from errors import ClientGone, InferenceTimeout, Overloaded, ShuttingDown

# How often a request waiting for a place looks whether its client is still there.
GONE_POLL_SECONDS = 0.05


def never() -> bool:
    return False


class Admission:
    def __init__(self, workers: int, max_queue: int):
        self.workers, self.max_queue = workers, max_queue
        self.draining = threading.Event()
        self._running = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._admitted = 0
        self._held = threading.local()  # does this request thread hold a running place?

    @property
    def admitted(self) -> int:
        """Requests holding or waiting for an inference place now (/status)."""
        return self._admitted

    @property
    def capacity(self) -> int:
        return self.workers + self.max_queue

    @contextlib.contextmanager
    def admit(self, wait: float, gone: Callable[[], bool] = never):
        """Hold one inference place for the duration of a request, or refuse at once. A
        request admitted to the queue waits at most `wait` seconds for a running place, and
        gives its place in the queue up as soon as its client has gone (`gone()`)."""
        with self._lock:
            if self.draining.is_set():
                raise ShuttingDown(headers={"Retry-After": "1"})
            if self._admitted >= self.capacity:
                raise Overloaded(headers={"Retry-After": "1"})
            self._admitted += 1
        try:
            if not self._acquire(wait, gone):
                raise Overloaded(headers={"Retry-After": "1"})
            self._held.place = True
            try:
                yield
            finally:
                self.hand_back()
        finally:
            with self._lock:
                self._admitted -= 1

    def _acquire(self, wait: float, gone: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + wait
        while True:
            if gone():
                raise ClientGone()
            remaining = deadline - time.monotonic()
            if self._running.acquire(timeout=max(0.0, min(remaining, GONE_POLL_SECONDS))):
                return True
            if remaining <= GONE_POLL_SECONDS:
                return False

    def hand_back(self) -> None:
        """Give this request's running place back early (it now only waits for the model);
        the request stays admitted. Idempotent, and a no-op on a thread that holds none."""
        if getattr(self._held, "place", False):
            self._held.place = False
            self._running.release()


class TimeLimit:
    def __init__(self, workers: int, timeout: float):
        self.workers, self.timeout = workers, timeout
        self._lock = threading.Lock()
        self._stuck = 0
        # Model calls run here so a caller can stop waiting; spare threads absorb stuck calls.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers * 2,
                                                               thread_name_prefix="inference")

    @property
    def healthy(self) -> bool:
        """False while as many model calls are stuck past the limit as there are workers."""
        return self._stuck < self.workers

    def run(self, function):
        """Run a model call with the time limit; 504 when it is exceeded."""
        future = self._executor.submit(function)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            with self._lock:
                self._stuck += 1
            future.add_done_callback(self._unstuck)
            raise InferenceTimeout() from None

    def _unstuck(self, _future) -> None:
        with self._lock:
            self._stuck -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
