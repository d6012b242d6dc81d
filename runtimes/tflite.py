"""TFLite models with LiteRT (`ai-edge-litert`). An interpreter is not thread-safe: one call at a time.

LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." once per process, when
its first interpreter is made, straight to file descriptor 2; no variable of its own turns it
off. Where TF_CPP_MIN_LOG_LEVEL hides TensorFlow's INFO lines (the service sets it unless
FRAMEWORK_LOGS=true: serving.startup), interpreters are made with descriptor 2 going to a
temporary file until that notice has been held back once; everything else written there
meanwhile (another thread's log line, an error of LiteRT's) is written out right after.
"""
from __future__ import annotations

import os
import sys
import tempfile
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


XNNPACK_NOTICE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
_notice = threading.Lock()
_notice_held_back = False


def _info_lines_off() -> bool:
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip()
    return level.isdigit() and int(level) >= 1


def _without_notice(make):
    """`make()`, with LiteRT's XNNPACK notice held back (module docstring) where it should be."""
    global _notice_held_back
    with _notice:
        if _notice_held_back or not _info_lines_off():
            return make()
        with tempfile.TemporaryFile() as held:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(held.fileno(), 2)
            try:
                return make()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                held.seek(0)
                written = held.read()
                _notice_held_back = XNNPACK_NOTICE in written
                if written.replace(XNNPACK_NOTICE, b""):
                    os.write(2, written.replace(XNNPACK_NOTICE, b""))


def _interpreter(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


class TFLiteExecutor(Executor):

    def __init__(self, path: Path, threads: int | None = None):
        self._interpreter = _without_notice(lambda: _interpreter(path, threads or os.cpu_count() or 1))
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
