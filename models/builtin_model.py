"""What every built-in model family does the same way, written once: its weight file (found or
downloaded and verified), OpenVINO tried first where it was asked for and no GPU is in use,
its framework when OpenVINO cannot run the model (one log line, and /models says why), and the
description /models shows. A family (classifiers.keras_applications, detectors.imageai_detectors)
keeps only what differs: how its framework builds the network, how OpenVINO compiles it, where
its framework sees a GPU, and its own predict().
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar

from contract import OPENVINO, InferenceOptions, Model, ModelUnavailable
from models.builtins import Builtin
from models.weights import WeightFile, ensure_weights
from runtimes import openvino


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
        path = ensure_weights(self.weights, self.models_dir, download=self.download, check=self.build)
        framework_model = openvino.FrameworkModel(lambda: self.build(path))
        if self.options.runtime == OPENVINO:
            reason = self.gpu_in_use()
            if reason is None:
                network, reason = openvino.attempt(self.name, self.framework_label,
                                                   lambda: self.load_openvino(framework_model, path),
                                                   framework_model)
                if network is not None:
                    self._runtime, self._openvino = OPENVINO, network
                    return
            self._runtime_reason = reason
        self.load_framework(framework_model())
        self._runtime = self.framework

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
    def load_openvino(self, framework_model: openvino.FrameworkModel, weights: Path) -> openvino.CompiledNetwork:
        """Prepare predict() on OpenVINO (converted from `framework_model`, or from the cache
        without building it); the compiled network (its precision and devices tell /models).
        Raises openvino.Unusable."""

    @abc.abstractmethod
    def load_framework(self, network) -> None:
        """Prepare predict() on the framework's own loaded network."""
