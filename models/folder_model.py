"""What users' model folders share, whatever their task: the executor that opens the file or
reaches the remote engine (its format's row in runtimes/formats.py), the input size, the
start-up checks against the model itself, and the image → tensor step."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
from PIL import Image

from contract import OPENVINO, InferenceOptions, ModelUnavailable, NetworkTensors, TensorInfo
from models.folder_spec import FolderSpec, SpecError
from models.preprocessing import Placement, normalise, place
from runtimes import FORMATS, Executor, open_executor, openvino
from runtimes.openvino_file import OpenVINOFileExecutor
from runtimes.remote import RETRY_SECONDS, EngineProblem

log = logging.getLogger(__name__)


class FolderModel:
    """Mixed into a task's contract class (classifiers.folder, detectors.folder)."""

    def __init__(self, spec: FolderSpec, options: InferenceOptions = InferenceOptions()):
        self.spec = spec
        self.name = spec.name
        self.options = options
        self.format = FORMATS[spec.format]
        self.frameworks = self.format.frameworks
        self.resize_mode = spec.resize
        # A model on a remote engine is loaded again soon after a failure, in the background
        # too: it becomes ready by itself when its engine comes up.
        self.load_retry_seconds = RETRY_SECONDS if spec.remote else None
        self._executor: Executor | None = None
        self._runtime_reason: str | None = None   # why OpenVINO, configured, is not what runs

    @property
    def labels(self) -> list[str]:
        return list(self.spec.labels)

    @property
    def input_size(self) -> tuple[int, int] | None:
        if self.spec.size:
            return self.spec.size
        return self._executor.fixed_size if self._executor else None

    @property
    def runtime(self) -> str:
        """The configured runtime until loaded; then the one that runs the model."""
        if isinstance(self._executor, OpenVINOFileExecutor) or (self._executor is None and self.spec.runtime == OPENVINO):
            return OPENVINO
        return self.format.runtime

    @property
    def device(self) -> str:
        if self.spec.remote:
            return "remote"
        return self._executor.devices if isinstance(self._executor, OpenVINOFileExecutor) else "cpu"

    @property
    def source_field(self) -> str:
        """The model.json field that names the model, for problems with the model itself."""
        return "'model'" if self.spec.remote else "'file'"

    @property
    def tensors(self) -> Executor | None:
        """The opened executor with its tensors (models.check prints them); None before load."""
        return self._executor

    def network_tensors(self) -> NetworkTensors | None:
        """The model file's (or engine model's) own input and outputs, in their own data types,
        for any batch size (the executor splits a batch where the model fixes it)."""
        executor = self._executor
        if executor is None:
            return None
        spec = self.spec
        height, width = self.input_size
        made = (f"RGB 0-255, {spec.resize} to {height}x{width}, (pixel - mean {list(spec.mean)}) / std "
                f"{list(spec.std)}, {executor.layout}")
        if executor.input.quantized:
            made += ", quantized with the input's scale and zero point"
        return NetworkTensors(_any_batch(executor.input), tuple(_any_batch(o) for o in executor.outputs), made)

    def infer_tensors(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._executor.run_raw(batch)

    def describe(self) -> dict:
        info = {"builtin": False, **self.spec.describe()}
        if self._executor is not None:
            info["tensors"] = {"input": self._executor.input.describe(),
                               "outputs": [o.describe() for o in self._executor.outputs],
                               "layout": self._executor.layout}
        if isinstance(self._executor, OpenVINOFileExecutor):
            info["openvino_device"] = self.options.device
        if self._runtime_reason:
            info["runtime_reason"] = self._runtime_reason
        return info

    def remote_status(self) -> dict | None:
        if not self.spec.remote:
            return None
        if self._executor is None:
            return {"host": self.spec.remote.host, "state": "not_connected"}
        return self._executor.status()

    def validate(self) -> None:
        """Start-up check against the model file, or the engine's model when the engine answers
        (an engine that is down stops nothing: the model loads once it answers). A format that
        needs a framework (Keras) is checked at load, once the framework is imported."""
        if self.format.frameworks:
            return
        try:
            executor = self._open(threads=1)
        except EngineProblem as problem:
            log.warning("model '%s': the inference engine at %s %s; the model loads once it answers",
                        self.name, self.spec.remote.host, problem.reason)
            return
        self._check(executor)

    def load(self) -> None:
        threads = self.options.threads
        executor = self._open(threads=threads)
        self._check(executor)
        if self.spec.runtime == OPENVINO:
            on_openvino, self._runtime_reason = openvino.attempt(
                self.name, self.format.runtime,
                lambda: OpenVINOFileExecutor(executor, self.spec.path, threads, self.options.device))
            executor = on_openvino or executor
        self._executor = executor

    def _open(self, threads: int) -> Executor:
        if not self.spec.remote:
            return open_executor(self.spec.format, self.spec.path, threads=threads)
        try:
            return open_executor(self.spec.format, self.spec.remote, size=self.spec.size,
                                 layout=self.spec.tensor_layout)
        except ValueError as exc:  # the engine's model cannot be used as model.json describes it
            raise SpecError([f"{self.spec.where}: {exc}"]) from None

    def load_failure(self, exc: Exception) -> str:
        if isinstance(exc, EngineProblem):
            return f"the inference engine {exc.reason}"
        if isinstance(exc, ModelUnavailable):
            return exc.reason
        if self.spec.remote:
            return f"the model on the inference engine could not be opened ({type(exc).__name__})"
        return (f"the model file MODELS_DIR/{self.name}/{self.spec.file} could not be loaded "
                f"({type(exc).__name__}); check it with `python -m models.check MODELS_DIR/{self.name}`")

    def _check(self, executor: Executor) -> None:
        where = self.spec.where
        problems = []
        try:
            fixed = executor.fixed_size
        except ValueError as exc:
            raise SpecError([f"{where}: {self.source_field} {exc}"]) from None
        if self.spec.size and fixed and tuple(self.spec.size) != tuple(fixed):
            problems.append(f"{where}: 'input.size' is {list(self.spec.size)} but the model "
                            f"takes {list(fixed)}")
        if not self.spec.size and not fixed:
            problems.append(f"{where}: 'input.size' is required: the model's input size is not fixed")
        if self.spec.tensor_layout and self.spec.tensor_layout != executor.layout:
            problems.append(f"{where}: 'input.layout' is {self.spec.tensor_layout} but the model "
                            f"takes {executor.layout}")
        problems += self.check_outputs(executor, where)
        if problems:
            raise SpecError(problems)

    def check_outputs(self, executor: Executor, where: str) -> list[str]:
        """Problems with the model's outputs for this task (each task's class says)."""
        raise NotImplementedError

    def inputs(self, images: list[Image.Image]) -> tuple[np.ndarray, list[Placement]]:
        size = self.input_size
        placed = [place(img, size, self.spec.resize) for img in images]
        pixels = np.stack([p[0] for p in placed])
        return normalise(pixels, self.spec.mean, self.spec.std, self._executor.layout), [p[1] for p in placed]


def _any_batch(info: TensorInfo) -> TensorInfo:
    """The tensor with its batch dimension free: any batch size is run, split where need be."""
    return dataclasses.replace(info, shape=(None, *info.shape[1:]))
