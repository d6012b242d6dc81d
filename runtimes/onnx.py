"""ONNX models with ONNX Runtime (CPU, or CUDA when the GPU build and a GPU are present)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from runtimes.base import Executor, TensorInfo

_ONNX_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


def _info(arg) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorInfo(arg.name, shape, np.dtype(_ONNX_TYPES.get(arg.type, np.float32)))


class OnnxExecutor(Executor):

    @classmethod
    def sees_gpu(cls) -> bool:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"the model has {len(inputs)} inputs; one image input is supported")
        self.input = _info(inputs[0])
        self.outputs = [_info(o) for o in self._session.get_outputs()]

    def _invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._session.run(None, {self.input.name: batch})
