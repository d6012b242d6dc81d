"""What users' model folders share, whatever their task: the runtime that opens the file, the
input size, the start-up checks against the file itself, and the image → tensor step."""
from __future__ import annotations

import numpy as np
from PIL import Image

from models.folder_spec import FolderSpec, SpecError
from models.preprocessing import Placement, normalise, place
from runtimes import RUNTIME_NAMES, Runtime, frameworks, open_runtime


class FolderModel:
    """Mixed into a task's contract class (classifiers.folder, detectors.folder)."""

    def __init__(self, spec: FolderSpec, threads: int | None = None):
        self.spec = spec
        self.name = spec.name
        self.threads = threads
        self.frameworks = frozenset({frameworks.TENSORFLOW}) if spec.format == "keras" else frozenset()
        self.resize_mode = spec.resize
        self._runtime: Runtime | None = None

    @property
    def labels(self) -> list[str]:
        return list(self.spec.labels)

    @property
    def input_size(self) -> tuple[int, int] | None:
        if self.spec.size:
            return self.spec.size
        return self._runtime.fixed_size if self._runtime else None

    @property
    def runtime(self) -> str:
        return RUNTIME_NAMES[self.spec.format]

    @property
    def tensors(self) -> Runtime | None:
        """The opened runtime with its tensors (models.check prints them); None before load."""
        return self._runtime

    def describe(self) -> dict:
        info = {"builtin": False, **self.spec.describe()}
        if self._runtime is not None:
            info["tensors"] = {"input": self._runtime.input.describe(),
                               "outputs": [o.describe() for o in self._runtime.outputs],
                               "layout": self._runtime.layout}
        return info

    def validate(self) -> None:
        """Start-up check against the model file itself. Keras files are checked at load
        (opening them needs TensorFlow)."""
        if self.spec.format != "keras":
            self._check(open_runtime(self.spec.format, self.spec.path, threads=1))

    def load(self) -> None:
        threads = self.threads or frameworks.intra_op_threads()
        runtime = open_runtime(self.spec.format, self.spec.path, threads=threads)
        self._check(runtime)
        self._runtime = runtime

    def load_failure(self, exc: Exception) -> str:
        return (f"the model file MODELS_DIR/{self.name}/{self.spec.file} could not be loaded "
                f"({type(exc).__name__}); check it with `python -m models.check MODELS_DIR/{self.name}`")

    def _check(self, runtime: Runtime) -> None:
        where = self.spec.where
        problems = []
        try:
            fixed = runtime.fixed_size
        except ValueError as exc:
            raise SpecError([f"{where}: 'file' {exc}"]) from None
        if self.spec.size and fixed and tuple(self.spec.size) != tuple(fixed):
            problems.append(f"{where}: 'input.size' is {list(self.spec.size)} but the model "
                            f"takes {list(fixed)}")
        if not self.spec.size and not fixed:
            problems.append(f"{where}: 'input.size' is required: the model's input size is not fixed")
        problems += self.check_outputs(runtime, where)
        if problems:
            raise SpecError(problems)

    def check_outputs(self, runtime: Runtime, where: str) -> list[str]:
        """Problems with the model's outputs for this task (each task's class says)."""
        raise NotImplementedError

    def inputs(self, images: list[Image.Image]) -> tuple[np.ndarray, list[Placement]]:
        size = self.input_size
        placed = [place(img, size, self.spec.resize) for img in images]
        pixels = np.stack([p[0] for p in placed])
        return normalise(pixels, self.spec.mean, self.spec.std, self._runtime.layout), [p[1] for p in placed]
