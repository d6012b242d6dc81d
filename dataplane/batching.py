"""Dynamic micro-batching: concurrent requests for one model become one batched model call.

A worker thread takes the first waiting request and every other one already waiting (up to
MAX_BATCH_SIZE images) that asks with the same options (a detector's min_score: each call
answers one threshold; requests with another start the next batch). It waits up to
BATCH_TIMEOUT_MS for more only while other requests for the same model have announced
themselves (admitted, still decoding): a request that is alone is dispatched at once, so
latency at concurrency 1 does not change.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import threading
import time
from typing import Callable

import numpy as np


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

    def submit(self, images: list, token=None, options: tuple = ()):
        """`predict(images, *options)` for these images, computed with other waiting requests'
        that have the same options; their part of the answer (rows, or one list per image)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cv:
            if token is not None and token["open"]:
                self._expected -= 1
                token["open"] = False
            self._queue.append((images, options, future))
            self._cv.notify_all()
        return future.result()

    def _take_batch(self) -> list:
        with self._cv:
            while not self._queue:
                self._cv.wait()
            batch = [self._queue.popleft()]
            count, options = len(batch[0][0]), batch[0][1]
            deadline = time.monotonic() + self.timeout
            while count < self.max_images:
                # The oldest waiting request with the same options that fits; the others keep
                # their places and start the next batch.
                joining = next((i for i, (images, other, _) in enumerate(self._queue)
                                if other == options and count + len(images) <= self.max_images), None)
                if joining is not None:
                    item = self._queue[joining]
                    del self._queue[joining]
                    batch.append(item)
                    count += len(item[0])
                    continue
                remaining = deadline - time.monotonic()
                if self._queue or self._expected <= 0 or remaining <= 0:
                    break
                self._cv.wait(remaining)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            images = [img for item_images, _, _ in batch for img in item_images]
            try:
                rows = self._predict(images, *batch[0][1])
            except BaseException as exc:  # every caller in the batch gets the failure
                for _, _, future in batch:
                    future.set_exception(exc)
                continue
            start = 0
            for item_images, _, future in batch:
                future.set_result(rows[start:start + len(item_images)])
                start += len(item_images)
