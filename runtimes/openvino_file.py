"""A user's TFLite or ONNX file executed by OpenVINO (model.json `"runtime": "openvino"`).

OpenVINO reads both formats itself, quantized TFLite models included (their integer input and
output stay integer, with the file's own scale and zero point). The format's own runtime
(LiteRT, ONNX Runtime) opens the file first: it reads the tensors (names, shapes, dtypes,
quantization) as it always does, and is the reference OpenVINO's answer is checked against on
a probe batch at load. A file OpenVINO cannot read, compile or match runs on that runtime
instead (runtimes.openvino.attempt: one log line, /models says why).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from runtimes import openvino, openvino_devices
from runtimes.base import Executor

# Largest difference allowed on the probe, in units of the output's range (float outputs) or
# of its quantization step (quantized outputs: integer kernels may round differently).
FLOAT_TOLERANCE = 1e-3
QUANTIZED_STEPS = 2


class OpenVINOFileExecutor(Executor):
    """`reference` opened the file (its runtime's executor); OpenVINO compiles it for `device`
    (OPENVINO_DEVICE) at full precision and must answer as the reference on the probe."""

    def __init__(self, reference: Executor, path: Path, threads: int | None = None,
                 device: str = openvino_devices.CPU):
        self.input, self.outputs = reference.input, reference.outputs
        model = openvino.core().read_model(str(path))
        if len(model.inputs) != 1 or len(model.outputs) != len(self.outputs):
            raise openvino.Unusable("OpenVINO reads the file with other inputs or outputs")
        config = openvino_devices.compile_config(device, openvino.F32, threads or 0)
        compiled = openvino.core().compile_model(model, device, config)
        self._network = openvino.CompiledNetwork(compiled)
        self._outputs_by_name = _output_order(compiled, self.outputs)
        check(self, reference, path.parent.name)

    @property
    def devices(self) -> str:
        """Where OpenVINO runs the file now (/models' `device`)."""
        return self._network.devices

    @property
    def fixed_batch(self) -> int | None:
        return self.input.shape[0] if isinstance(self.input.shape[0], int) else 1

    def _invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        raw = self._network(batch)
        return [raw[i] for i in self._outputs_by_name]


def _output_order(compiled, outputs) -> list[int]:
    """OpenVINO's output index for each of the reference runtime's outputs: by name where the
    names match, else in the file's order."""
    names = [set(o.get_names()) for o in compiled.outputs]
    order = [next((i for i, n in enumerate(names) if info.name in n), None) for info in outputs]
    return order if None not in order and len(set(order)) == len(order) else list(range(len(outputs)))


def probe(executor: Executor) -> np.ndarray:
    """Two structured images in the model's layout, spanning its input range: 0-1 for a float
    input, the whole integer range for a quantized one (as real values, which `run` quantizes
    back exactly)."""
    batch = openvino.probe_batch(*(executor.fixed_size or (224, 224)))
    info = executor.input
    if info.quantized:
        batch = (np.round(batch) + np.iinfo(info.dtype).min - info.zero_point) * np.float32(info.scale)
    elif not np.issubdtype(info.dtype, np.integer):
        batch = batch / np.float32(255)
    return batch if executor.layout == "NHWC" else batch.transpose(0, 3, 1, 2)


def check(executor: Executor, reference: Executor, name: str) -> None:
    """Raise openvino.Unusable unless OpenVINO answers as the reference runtime on the probe."""
    batch = probe(reference)
    for got, wanted, info in zip(executor.run(batch), reference.run(batch), executor.outputs, strict=True):
        if info.quantized:
            openvino.check_close(name, got / info.scale, wanted / info.scale, tolerance=QUANTIZED_STEPS)
        else:
            scale = max(1.0, float(np.abs(wanted).max()))
            openvino.check_close(name, got / scale, wanted / scale, tolerance=FLOAT_TOLERANCE)
