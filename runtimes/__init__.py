"""Runtimes for users' own models: LiteRT (TFLite), ONNX Runtime, Keras files, and remote
inference engines (the Open Inference Protocol V2 over REST or gRPC, TensorFlow Serving's REST
API).

Each runtime reads its model's input and output tensors (shape, dtype, quantization) from the
file itself, or from the engine's metadata, and takes float32 input in the model's own layout;
quantized inputs are quantized and outputs dequantized with the model's own scale and zero
point, so no model needs code of its own.
"""
from __future__ import annotations

from pathlib import Path

from runtimes.base import Runtime, TensorInfo

# What executes each model format (/models says it as "runtime").
RUNTIME_NAMES = {"tflite": "litert", "onnx": "onnxruntime", "keras": "tensorflow",
                 "kserve_v2": "kserve_v2", "tfserving": "tfserving"}
REMOTE_FORMATS = ("kserve_v2", "tfserving")


def open_runtime(fmt: str, source, *, threads: int | None = None, size: tuple[int, int] | None = None,
                 layout: str | None = None) -> Runtime:
    """`source` is the model file's Path, or for a remote engine its runtimes.remote.RemoteTarget
    (`size` and `layout` then stand in for metadata the engine does not publish)."""
    if fmt == "tflite":
        from runtimes.tflite import TFLiteRuntime
        return TFLiteRuntime(Path(source), threads=threads)
    if fmt == "onnx":
        from runtimes.onnx import OnnxRuntime
        return OnnxRuntime(Path(source), threads=threads)
    if fmt == "keras":
        from runtimes.keras_file import KerasFileRuntime
        return KerasFileRuntime(Path(source))
    if fmt == "kserve_v2" and source.transport == "grpc":
        from runtimes.open_inference_grpc import KServeV2GrpcRuntime
        return KServeV2GrpcRuntime(source, size, layout)
    if fmt == "kserve_v2":
        from runtimes.open_inference import KServeV2Runtime
        return KServeV2Runtime(source, size, layout)
    if fmt == "tfserving":
        from runtimes.tfserving import TFServingRuntime
        return TFServingRuntime(source, size, layout)
    raise ValueError(f"unknown format {fmt!r}")


__all__ = ["REMOTE_FORMATS", "RUNTIME_NAMES", "Runtime", "TensorInfo", "open_runtime"]
