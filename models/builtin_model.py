"""What every built-in model family does the same way, written once: its weight file (found or
downloaded and verified), OpenVINO tried first where it was asked for and no GPU is in use,
its framework when OpenVINO cannot run the model (one log line, and /models says why), and the
description /models shows. A start from the converted-model cache imports no framework: the
framework is asked for (FrameworksNeeded) only for a conversion, a framework path or a GPU
check; in a serving-only install (no framework) a model without a valid conversion is an honest
"not converted" naming the command that converts it. A family (classifiers.keras_applications, detectors.imageai_detectors)
keeps only what differs: how its framework builds the network, how OpenVINO compiles it, where
its framework sees a GPU, and its own predict().
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar

from contract import OPENVINO, FrameworksNeeded, InferenceOptions, Model, ModelUnavailable
from models.builtins import Builtin
from models.weights import WeightFile, ensure_weights
from runtimes import frameworks, openvino


class BuiltinModel(Model):
    framework: ClassVar[str]          # the runtime name of the framework path: tensorflow, torch
    framework_label: ClassVar[str]    # as log lines name it: TensorFlow, torch

    def __init__(self, builtin: Builtin, models_dir: Path, download: bool = True,
                 options: InferenceOptions = InferenceOptions()):
        self.builtin = builtin
        self.name = builtin.name
        self.models_dir = Path(models_dir)
        self.download = download
        self.options = options
        self._runtime: str | None = None           # what runs it, once loaded
        self._runtime_reason: str | None = None    # why that is not the runtime asked for
        self._openvino: openvino.CompiledNetwork | None = None   # the network OpenVINO runs, once loaded

    @property
    def weights(self) -> WeightFile:
        return self.builtin.weights

    @property
    def runtime(self) -> str:
        """The runtime asked for until loaded; then the one that runs the model."""
        if self._runtime:
            return self._runtime
        return OPENVINO if self.options.runtime == OPENVINO else self.framework

    @property
    def openvino_devices(self) -> str:
        """Where OpenVINO runs the network (as /models writes devices: cpu, gpu.0, ...)."""
        return self._openvino.devices if self._openvino is not None else "cpu"

    def describe(self) -> dict:
        info = {"builtin": True, **self.described(), "weights": self.weights.filename}
        if self._openvino is not None:
            info["precision"] = self._openvino.precision
            info["openvino_device"] = self.options.device
        if self._runtime_reason:
            info["runtime_reason"] = self._runtime_reason
        return info

    def load_failure(self, exc: Exception) -> str:
        if isinstance(exc, ModelUnavailable):
            return exc.reason
        return self.weights.unreadable(exc)

    def load(self) -> None:
        try:
            self._load()
        except FrameworksNeeded:
            if frameworks.installed(self.frameworks):
                raise   # the registry imports them and loads again
            raise ModelUnavailable(self.not_converted()) from None

    def _load(self) -> None:
        if self.options.runtime == OPENVINO:
            reason = self._gpu_reason()
            if reason is None:
                path = self._weights_path()
                framework_model = openvino.FrameworkModel(lambda: self._build(path))
                network, reason = openvino.attempt(self.name, self.framework_label,
                                                   lambda: self.load_openvino(framework_model, path),
                                                   framework_model)
                if network is not None:
                    self._runtime, self._openvino = OPENVINO, network
                    return
            self._runtime_reason = reason
            self.require_frameworks()
        path = ensure_weights(self.weights, self.models_dir, download=self.download, check=self._build)
        self.load_framework(self._build(path))
        self._runtime = self.framework

    def _weights_path(self) -> Path | None:
        """The weight file, found or fetched. Where this install cannot run the framework (a
        serving-only install), the converted model needs none: None when it is not there."""
        if not frameworks.installed(self.frameworks):
            path = self.weights.path(self.models_dir)
            return path if path.is_file() else None
        return ensure_weights(self.weights, self.models_dir, download=self.download, check=self._build)

    def _gpu_reason(self) -> str | None:
        """Where the framework sees a GPU, its GPU path runs the model (the reason); a host
        without an NVIDIA driver has none, and its framework need not be imported to ask."""
        if not frameworks.gpu_possible():
            return None
        self.require_frameworks()
        return self.gpu_in_use()

    def require_frameworks(self) -> None:
        """FrameworksNeeded unless this model's frameworks are imported (in the one order that
        works, by the registry's prepare step)."""
        if not frameworks.imported(self.frameworks):
            raise FrameworksNeeded()

    def _build(self, weights_path: Path):
        self.require_frameworks()
        return self.build(weights_path)

    def source_versions(self) -> str | None:
        """The framework's versions for the converted model's cache key, read without importing
        it; None where a package is not installed (the cache then serves any such conversion)."""
        packages = frameworks.CONVERTERS[self.framework]
        versions = [frameworks.version(package) for package in packages]
        return None if None in versions else "-".join(f"{p}{v}" for p, v in zip(packages, versions))

    def not_converted(self) -> str:
        return (f"the converted model for '{self.name}' is not in MODELS_DIR/{openvino.CACHE_FOLDER} (or failed its "
                f"check), and this install has no {self.framework_label} to convert it: run `python -m models.convert "
                f"{self.name}` with the full install (requirements.txt) and the same MODELS_DIR")

    # --- what a family says ---------------------------------------------------------------------

    @abc.abstractmethod
    def described(self) -> dict:
        """The family's facts for /models: format, architecture, preprocessing."""

    @abc.abstractmethod
    def build(self, weights_path: Path):
        """The framework's network with the weights loaded (raises on a bad file)."""

    @abc.abstractmethod
    def gpu_in_use(self) -> str | None:
        """Where the framework sees a GPU, its GPU path runs the model: the reason; else None."""

    @abc.abstractmethod
    def load_openvino(self, framework_model: openvino.FrameworkModel,
                      weights: Path | None) -> openvino.CompiledNetwork:
        """Prepare predict() on OpenVINO (converted from `framework_model`, or from the cache
        without building it; `weights` None: no weight file here, any conversion of this model
        serves); the compiled network (its precision and devices tell /models). Raises
        openvino.Unusable, or FrameworksNeeded where the conversion needs the framework."""

    @abc.abstractmethod
    def load_framework(self, network) -> None:
        """Prepare predict() on the framework's own loaded network."""
