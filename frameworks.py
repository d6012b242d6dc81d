"""Imports the deep-learning frameworks once, in the only order that works in one process.

`import tensorflow` followed by `import torchvision` segfaults (triton's shared library), and
importing torch alone first is not enough: torch, torchvision and imageai must all be loaded
before tensorflow. Every model load goes through `require`, which imports every framework the
configured models need, so the first model to load decides nothing about the order.
"""
from __future__ import annotations

import importlib
import threading

TORCH = "torch"
TENSORFLOW = "tensorflow"

_ORDER = {
    TORCH: ("torch", "torchvision", "imageai.Detection"),
    TENSORFLOW: ("tensorflow", "keras"),
}
_lock = threading.Lock()
_done: set[str] = set()


def require(needed: set[str]) -> None:
    unknown = set(needed) - set(_ORDER)
    if unknown:
        raise ValueError(f"unknown frameworks: {sorted(unknown)}")
    with _lock:
        for framework in (TORCH, TENSORFLOW):  # torch stack first, always
            if framework in needed and framework not in _done:
                for module in _ORDER[framework]:
                    importlib.import_module(module)
                _done.add(framework)
