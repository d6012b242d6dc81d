"""Executors for users' own models: LiteRT (TFLite), ONNX Runtime, Keras files, OpenVINO, and
remote inference engines (the Open Inference Protocol V2 over REST or gRPC, TensorFlow Serving's
REST API); runtimes/formats.py is the table of formats and what executes each.

Each executor reads its model's input and output tensors (shape, dtype, quantization) from the
file itself, or from the engine's metadata, and takes float32 input in the model's own layout;
quantized inputs are quantized and outputs dequantized with the model's own scale and zero
point, so no model needs code of its own.
"""
from __future__ import annotations

from pathlib import Path

from runtimes.base import Executor, TensorInfo
from runtimes.formats import FILE, FORMATS, REMOTE_FORMATS, Format


def open_executor(fmt: str, source, *, threads: int | None = None, size: tuple[int, int] | None = None,
                  layout: str | None = None) -> Executor:
    """`source` is the model file's Path, or for a remote engine its runtimes.remote.RemoteTarget
    (`size` and `layout` then stand in for metadata the engine does not publish)."""
    row = FORMATS[fmt]
    if not row.remote:
        return row.executor(FILE)(Path(source), threads=threads)
    return row.executor(source.transport)(source, size, layout)


__all__ = ["FORMATS", "REMOTE_FORMATS", "Executor", "Format", "TensorInfo", "open_executor"]
