"""The result cache: (task, model, parameters, image key) -> one image's result.

Image keys are the sha256 of the image bytes, or of the URL for image URLs (until the TTL).
Thread-safe; only successful results are stored.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Hashable

from cachetools import TTLCache


class ResultCache:
    def __init__(self, maxsize: int, ttl: float, timer=None):
        self.enabled = maxsize > 0
        kwargs = {"timer": timer} if timer else {}
        self._cache = TTLCache(maxsize=max(maxsize, 1), ttl=ttl, **kwargs)
        self._lock = threading.Lock()

    def get(self, key: Hashable, check: Callable[[Any], bool] | None = None) -> Any | None:
        """`check` is for values from outside this process (the shared cache's); what is held here
        was checked by the pipeline before it was stored."""
        if not self.enabled:
            return None
        with self._lock:
            return self._cache.get(key)

    def put(self, key: Hashable, value: Any) -> None:
        if self.enabled:
            with self._lock:
                self._cache[key] = value
