"""The executor interface and the quantization arithmetic every executor shares (a tensor's facts,
TensorInfo, are the model contract's: models offer the same tensors to clients)."""
from __future__ import annotations

import abc

import numpy as np

from contract import TensorInfo


def quantize(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    if info.quantized:
        limits = np.iinfo(info.dtype)
        q = np.round(x / info.scale + info.zero_point)
        return np.clip(q, limits.min, limits.max).astype(info.dtype)
    if np.issubdtype(info.dtype, np.integer):
        limits = np.iinfo(info.dtype)
        return np.clip(np.round(x), limits.min, limits.max).astype(info.dtype)
    return x.astype(info.dtype, copy=False)


def dequantize(y: np.ndarray, info: TensorInfo) -> np.ndarray:
    if info.quantized:
        return (y.astype(np.float32) - info.zero_point) * np.float32(info.scale)
    return y.astype(np.float32, copy=False)


class Executor(abc.ABC):
    """An opened model (a file, or a model on a remote engine) that runs tensors."""
    input: TensorInfo
    outputs: list[TensorInfo]

    @classmethod
    def sees_gpu(cls) -> bool:
        """Whether this executor would run its models on a GPU here."""
        return False

    @property
    def layout(self) -> str:
        """NHWC or NCHW, read from the model's input shape."""
        shape = self.input.shape
        if len(shape) == 4 and shape[3] == 3:
            return "NHWC"
        if len(shape) == 4 and shape[1] == 3:
            return "NCHW"
        raise ValueError(f"input shape {list(shape)} is not a batch of 3-channel images")

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        """(height, width) when the model fixes it."""
        shape = self.input.shape
        h, w = (shape[1], shape[2]) if self.layout == "NHWC" else (shape[2], shape[3])
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None

    @property
    def fixed_batch(self) -> int | None:
        """The images one call takes when the model fixes its batch dimension."""
        batch = self.input.shape[0]
        return batch if isinstance(batch, int) else None

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """float32 batch in the model's layout -> float32 outputs, batch first."""
        raw = self.run_raw(quantize(batch, self.input))
        return [dequantize(y, info) for y, info in zip(raw, self.outputs)]

    def run_raw(self, batch: np.ndarray) -> list[np.ndarray]:
        """A batch already in the model's own dtype -> its outputs in theirs (a quantized
        model's integers), any batch size: split where the model fixes its batch."""
        step = self.fixed_batch
        if step is not None and len(batch) > step:
            parts = [self._invoke(batch[i:i + step]) for i in range(0, len(batch), step)]
            return [np.concatenate(outs) for outs in zip(*parts)]
        return self._invoke(batch)

    @abc.abstractmethod
    def _invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the model on an input already in its dtype."""
