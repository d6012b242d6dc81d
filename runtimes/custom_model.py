"""What users' classifiers and detectors share: the runtime, its input size, the checks."""
from __future__ import annotations

import numpy as np
from PIL import Image

import frameworks
from models.custom_spec import CustomModelSpec, SpecError
from preprocessing import Placement, normalise, place
from runtimes import Runtime, open_runtime


class CustomModel:
    def __init__(self, spec: CustomModelSpec, threads: int | None = None):
        self.spec = spec
        self.name = spec.name
        self.threads = threads
        self.frameworks = frozenset({frameworks.TENSORFLOW}) if spec.format == "keras" else frozenset()
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
    def runtime(self) -> Runtime | None:
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

    def _check(self, runtime: Runtime) -> None:
        where = f"MODELS_DIR/{self.name}/model.json"
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
        raise NotImplementedError

    def inputs(self, images: list[Image.Image]) -> tuple[np.ndarray, list[Placement]]:
        size = self.input_size
        placed = [place(img, size, self.spec.resize) for img in images]
        pixels = np.stack([p[0] for p in placed])
        return normalise(pixels, self.spec.mean, self.spec.std, self._runtime.layout), [p[1] for p in placed]
