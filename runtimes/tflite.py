"""TFLite models with LiteRT (`ai-edge-litert`). An interpreter is not thread-safe: one call at a time."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from runtimes.base import Executor, TensorInfo


def _info(detail: dict) -> TensorInfo:
    signature = detail.get("shape_signature")
    shape = signature if signature is not None and len(signature) else detail["shape"]
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(detail["name"], tuple(int(d) if d > 0 else None for d in shape),
                      np.dtype(detail["dtype"]), float(scale), int(zero_point))


class TFLiteExecutor(Executor):

    def __init__(self, path: Path, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1)
        self._interpreter.allocate_tensors()
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"the model has {len(inputs)} inputs; one image input is supported")
        self._input_index = inputs[0]["index"]
        self.input = _info(inputs[0])
        outputs = self._interpreter.get_output_details()
        self._output_indices = [d["index"] for d in outputs]
        self.outputs = [_info(d) for d in outputs]
        self._lock = threading.Lock()

    @property
    def fixed_batch(self) -> int | None:
        return 1  # resized per call otherwise; one image per invoke keeps it simple and fast

    def _invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            self._interpreter.set_tensor(self._input_index, batch)
            self._interpreter.invoke()
            return [self._interpreter.get_tensor(i).copy() for i in self._output_indices]
