"""Dynamic micro-batching: concurrent requests for one model become one batched model call.

A worker thread takes the first waiting request and every other one already waiting (up to
MAX_BATCH_SIZE images) that asks with the same options (a detector's min_score: each call
answers one threshold; requests with another start the next batch). It waits up to
BATCH_TIMEOUT_MS for more only while other requests for the same model have announced
themselves (admitted, still decoding): a request that is alone is dispatched at once, so
latency at concurrency 1 does not change.

A request whose client has gone (its `gone()` says so) is never computed nor waited for: it is
dropped from the queue with ClientGone whenever a batch is taken.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import threading
import time
from typing import Callable

import numpy as np

from errors import ClientGone

# How often a request waiting for its batch looks whether its client is still there.
GONE_POLL_SECONDS = 0.05

def never() -> bool:
    return False


@dataclasses.dataclass(eq=False)  # compared by identity: never by their images
class _Waiting:
    images: list
    options: tuple
    future: concurrent.futures.Future
    gone: Callable[[], bool]


class MicroBatcher:
    def __init__(self, predict: Callable[..., np.ndarray | list], max_images: int, timeout_ms: float,
                 name: str = "model"):
        self._predict = predict
        self.max_images = max_images
        self.timeout = timeout_ms / 1000.0
        self._queue: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._expected = 0
        self._worker = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._worker.start()

    @contextlib.contextmanager
    def expecting(self):
        """Announce a request that will submit soon (while it decodes), so a forming batch
        waits for it; the announcement ends when the request submits or gives up."""
        with self._cv:
            self._expected += 1
        token = {"open": True}
        try:
            yield token
        finally:
            if token["open"]:
                self._withdraw(token)

    def _withdraw(self, token) -> None:
        with self._cv:
            self._expected -= 1
            token["open"] = False
            self._cv.notify_all()

    def submit(self, images: list, token=None, options: tuple = (), gone: Callable[[], bool] = never):
        """`predict(images, *options)` for these images, computed with other waiting requests'
        that have the same options; their part of the answer (rows, or one list per image)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cv:
            if token is not None and token["open"]:
                self._expected -= 1
                token["open"] = False
            item = _Waiting(images, options, future, gone)
            self._queue.append(item)
            self._cv.notify_all()
        while True:
            try:
                return future.result(timeout=GONE_POLL_SECONDS)
            except concurrent.futures.TimeoutError:
                if gone():
                    self._withdraw_item(item)  # raises ClientGone unless the batch already runs

    def _withdraw_item(self, item) -> None:
        with self._cv:
            if item in self._queue:
                self._queue.remove(item)
                raise ClientGone()

    def _drop_gone(self) -> None:
        """Fail, and forget, the waiting requests whose clients have gone (under the lock)."""
        for item in [item for item in self._queue if item.gone()]:
            self._queue.remove(item)
            item.future.set_exception(ClientGone())

    def _take_batch(self) -> list:
        with self._cv:
            self._drop_gone()
            while not self._queue:
                self._cv.wait()
                self._drop_gone()
            batch = [self._queue.popleft()]
            count, options = len(batch[0].images), batch[0].options
            deadline = time.monotonic() + self.timeout
            while count < self.max_images:
                # The oldest waiting request with the same options that fits; the others keep
                # their places and start the next batch.
                joining = next((i for i, waiting in enumerate(self._queue) if waiting.options == options
                                and count + len(waiting.images) <= self.max_images), None)
                if joining is not None:
                    item = self._queue[joining]
                    del self._queue[joining]
                    batch.append(item)
                    count += len(item.images)
                    continue
                remaining = deadline - time.monotonic()
                if self._queue or self._expected <= 0 or remaining <= 0:
                    break
                self._cv.wait(remaining)
        kept = []
        for item in batch:  # a client may have left while the batch formed
            if item.gone():
                item.future.set_exception(ClientGone())
            else:
                kept.append(item)
        return kept

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                continue
            images = [image for item in batch for image in item.images]
            try:
                rows = self._predict(images, *batch[0].options)
            except BaseException as exc:  # every caller in the batch gets the failure
                for item in batch:
                    item.future.set_exception(exc)
                continue
            start = 0
            for item in batch:
                item.future.set_result(rows[start:start + len(item.images)])
                start += len(item.images)
