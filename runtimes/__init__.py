"""Runtimes for users' own model files: LiteRT (TFLite), ONNX Runtime, Keras.

Each runtime reads its model's input and output tensors (shape, dtype, quantization) from the
file itself and takes float32 input in the model's own layout; quantized inputs are quantized
and outputs dequantized with the model's own scale and zero point, so no model needs code of
its own.
"""
from __future__ import annotations

from pathlib import Path

from runtimes.base import Runtime, TensorInfo

# What executes each model file format (/models says it as "runtime").
RUNTIME_NAMES = {"tflite": "litert", "onnx": "onnxruntime", "keras": "tensorflow"}


def open_runtime(fmt: str, path: Path, *, threads: int | None = None) -> Runtime:
    if fmt == "tflite":
        from runtimes.tflite import TFLiteRuntime
        return TFLiteRuntime(path, threads=threads)
    if fmt == "onnx":
        from runtimes.onnx import OnnxRuntime
        return OnnxRuntime(path, threads=threads)
    if fmt == "keras":
        from runtimes.keras_file import KerasFileRuntime
        return KerasFileRuntime(path)
    raise ValueError(f"unknown format {fmt!r}")


__all__ = ["RUNTIME_NAMES", "Runtime", "TensorInfo", "open_runtime"]
