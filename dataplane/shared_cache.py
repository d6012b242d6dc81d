"""The result cache in Redis, shared by every replica: the same keys and values as
`dataplane.cache.ResultCache`, so the pipeline cannot tell them apart.

A key (task, model, parameters..., image key) is written as canonical JSON and stored under
`<CACHE_PREFIX>:cache:<sha256 of that JSON>`: any URL or parameter makes a short, safe Redis
key. The value is JSON, never pickle (a poisoned Redis must not run code here), and carries
the canonical key back: a value that does not decode into exactly the shape this service
writes, for exactly this key, is garbage and is treated as a miss. So is a value of the right
shape that fails the caller's `check` (the pipeline's: what the model could have answered for
this key), so the cache need not know models.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Callable, Hashable

from contract import CLASSIFICATION, DETECTION, Detection
from dataplane.shared_store import SharedStore

FORMAT = 1
# A larger value is not stored (and not trusted when read): top_k=1000 labels is about 60 kB.
MAX_VALUE_BYTES = 256 * 1024
# Rows per value, at most (not stored past it, not trusted when read): every row costs each
# reader, and the annotation draws each one.
MAX_ROWS = 1000


class SharedResultCache:
    def __init__(self, store: SharedStore, ttl: int, enabled: bool = True,
                 max_value_bytes: int = MAX_VALUE_BYTES):
        self.store, self.ttl, self.enabled, self.max_value_bytes = store, ttl, enabled, max_value_bytes

    def redis_key(self, key: tuple) -> str:
        return self.store.key("cache", hashlib.sha256(canonical(key).encode()).hexdigest())

    def get(self, key: Hashable, check: Callable[[Any], bool] | None = None) -> Any | None:
        """The value, or None: a miss, or garbage (counted), as when `check(value)` is false."""
        if not self.enabled:
            return None
        name = self.redis_key(key)
        raw = self.store.run("cache_get", lambda client: client.get(name), None)
        if raw is None:
            return None
        value = decode(raw, key, self.max_value_bytes)
        if value is None or (check is not None and not check(value)):
            self.store.garbage("cache_get")
            return None
        return value

    def put(self, key: Hashable, value: Any) -> None:
        if not self.enabled:
            return
        data = encode(key, value)
        if data is None or len(data) > self.max_value_bytes:
            return
        name = self.redis_key(key)
        self.store.run("cache_put", lambda client: client.set(name, data, ex=self.ttl), None)


def canonical(key: tuple) -> str:
    """One JSON text per key: sets sorted, so equal keys always give equal text."""
    def plain(part):
        if isinstance(part, frozenset):
            return {"set": sorted(part)}
        return part
    return json.dumps([plain(part) for part in key], separators=(",", ":"), allow_nan=False)


def encode(key: tuple, value: tuple) -> bytes | None:
    """(width, height, result) as JSON; None when it holds anything this cache does not know."""
    width, height, result = value
    if len(result) > MAX_ROWS:
        return None
    try:
        if key[0] == CLASSIFICATION:
            rows = [[str(label), class_id if isinstance(class_id, str) else int(class_id), float(score)]
                    for label, class_id, score in result]
        elif key[0] == DETECTION:
            rows = [[d.label, float(d.score), [int(v) for v in d.box]] for d in result]
        else:
            return None
        return json.dumps({"format": FORMAT, "key": canonical(key), "width": int(width), "height": int(height),
                           "result": rows}, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError, AttributeError):
        return None


def decode(raw: bytes, key: tuple, max_bytes: int = MAX_VALUE_BYTES) -> tuple | None:
    """The cached (width, height, result) with the types the pipeline made, or None for garbage."""
    if not isinstance(raw, bytes) or len(raw) > max_bytes:
        return None
    try:
        body = json.loads(raw)
        if (not isinstance(body, dict) or body.get("format") != FORMAT or body.get("key") != canonical(key)
                or not _size(body.get("width")) or not _size(body.get("height"))
                or not isinstance(body.get("result"), list) or len(body["result"]) > MAX_ROWS):
            return None
        parse = _classification if key[0] == CLASSIFICATION else _detection
        result = [parse(row) for row in body["result"]]
    except (ValueError, TypeError, RecursionError):
        return None
    return body["width"], body["height"], result


def _size(value) -> bool:
    return type(value) is int and 0 <= value <= 1_000_000


def _score(value) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError("not a score")
    return float(value)


def _classification(row) -> tuple[str, int | str, float]:
    label, class_id, score = row  # ValueError/TypeError for anything but three items
    if not isinstance(label, str) or type(class_id) not in (int, str):
        raise ValueError("not a classification row")
    return label, class_id, _score(score)


def _detection(row) -> Detection:
    label, score, box = row
    if not isinstance(label, str) or not isinstance(box, list) or len(box) != 4 \
            or any(type(v) is not int for v in box):
        raise ValueError("not a detection row")
    return Detection(label, _score(score), tuple(box))
