"""The model contract: everything the registry, the data plane and the HTTP layer may ask of a
model, written down once. A model family implements `Classifier` or `Detector`; nothing about
a model is discovered at run time.

A model's life: constructed from configuration (cheap: no framework import, no file read) →
`validate()` at start-up (a bad model folder stops the process with the others' problems) →
`load()` exactly once, on first use or at preload, after its `frameworks` are imported →
`predict()` from many threads at once → `describe()` whenever /models asks. A model may also
offer its network's own tensors (`network_tensors()`, `infer_tensors()`) to clients that prepare
the input themselves.
"""
from __future__ import annotations

import abc
import dataclasses
import os
from typing import ClassVar, Sequence

import numpy as np
from PIL import Image

CLASSIFICATION = "classification"
DETECTION = "detection"
FACE = "face"

STRETCH = "stretch"      # the whole image is resized to `input_size`, aspect ratio not kept
LETTERBOX = "letterbox"  # resized to fit `input_size`, aspect ratio kept, padded


# What executes the built-in networks (InferenceOptions.runtime): OpenVINO, or each model's own
# framework (TensorFlow for the Keras classifiers, torch for ImageAI's detectors).
OPENVINO = "openvino"
FRAMEWORK = "framework"


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
    """How models execute, from the settings (INFERENCE_RUNTIME, INFERENCE_PRECISION,
    OPENVINO_DEVICE, INTRA_OP_THREADS, INTER_OP_THREADS): handed to every model when it is
    created and to the frameworks when they are imported, never kept in a global."""
    runtime: str = OPENVINO       # OPENVINO or FRAMEWORK
    precision: str = "f32"        # OpenVINO's arithmetic: f32 or bf16
    device: str = "CPU"           # the OpenVINO device: CPU, GPU, NPU, AUTO or a list (runtimes.openvino_devices)
    intra_op_threads: int = 0     # threads inside one model call; 0: the CPUs this process may use
    inter_op_threads: int = 1     # operations run side by side (TensorFlow, torch)

    @property
    def threads(self) -> int:
        """Threads inside one model call."""
        return self.intra_op_threads or len(os.sched_getaffinity(0)) or 1


class ModelUnavailable(Exception):
    """A model cannot load for a reason an operator can act on: its weights are missing, its
    folder does not match the model, its inference engine is down. Raised by the model families,
    the files and the runtimes below the registry, which reports `reason` as it is (/ready, the
    log) without a traceback. The reason never holds a path outside MODELS_DIR, a secret or an
    exception's own text."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class FrameworksNeeded(Exception):
    """A model's load needs its frameworks (TensorFlow, torch) and they are not imported yet: a
    conversion on a cache miss, a framework path, a GPU check. The registry imports every
    configured model's frameworks, in the one order that works, and loads the model again; a
    load that needs none (a start from the converted-model cache) never imports them."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One of a network's tensors: what an executor reads from a model file or an engine's
    metadata, and what a model offers to clients that prepare its input themselves."""
    name: str
    shape: tuple[int | None, ...]   # None for a dynamic dimension
    dtype: np.dtype
    scale: float = 0.0              # quantization: real = (q - zero_point) * scale
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale > 0 and np.issubdtype(self.dtype, np.integer)

    def describe(self) -> dict:
        info = {"name": self.name, "shape": [d if d is not None else -1 for d in self.shape],
                "dtype": np.dtype(self.dtype).name}
        if self.quantized:
            info.update(scale=self.scale, zero_point=self.zero_point)
        return info


@dataclasses.dataclass(frozen=True)
class NetworkTensors:
    """The tensors a model's network takes and gives, offered to clients that prepare its input
    themselves (the Open Inference Protocol's own tensors): one input, batch first, in the
    network's own data types (a quantized model's integers, with their scale and zero point)."""
    input: TensorInfo
    outputs: tuple[TensorInfo, ...]
    preprocessing: str    # how the input is made from an image, for a client to do the same


@dataclasses.dataclass(frozen=True)
class Detection:
    label: str
    score: float                     # 0-1
    box: tuple[int, int, int, int]   # x1, y1, x2, y2 in the input image's pixels


class Model(abc.ABC):
    task: ClassVar[str]
    name: str
    # Frameworks imported (in the one order that works in a process) before `load()`.
    frameworks: frozenset[str] = frozenset()
    # True when one `predict()` over many images costs much less than one per image: the data
    # plane then merges concurrent requests into one call (micro-batching).
    batchable: bool = False
    # How the image is fitted to `input_size`: STRETCH lets the decoder read large JPEGs at a
    # reduced scale (nothing is lost: the model sees the same resized image); LETTERBOX, or
    # None where the network resizes for itself.
    resize_mode: str | None = None
    # Seconds between load attempts while loading fails. None: the registry's own interval, tried
    # on demand. A model on a remote engine sets it and is retried in the background, so it
    # becomes ready by itself when its engine comes up.
    load_retry_seconds: float | None = None

    @property
    @abc.abstractmethod
    def labels(self) -> Sequence[str]:
        """Class names: index i is output i. Available before `load()`."""

    @property
    def class_ids(self) -> Sequence:
        """Stable identifiers of the classes (WordNet ids for ImageNet); default: the index."""
        return range(len(self.labels))

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(height, width) of the network input, or None where the network decides."""
        return None

    @property
    def runtime(self) -> str:
        """What executes the network (tensorflow, torch, litert, onnxruntime, ...)."""
        return "unknown"

    @property
    def device(self) -> str:
        """Where the network runs once loaded: cpu, cuda:0, ..."""
        return "cpu"

    def remote_status(self) -> dict | None:
        """For a model that runs on a remote inference engine: where and what the engine said
        last, `{"host": "triton:8000", "state": "ready"}` (or not_ready, unreachable, ...), read
        without waiting for the engine. None for a model that runs in this process."""
        return None

    def validate(self) -> None:  # noqa: B027 - optional: most models have nothing to check
        """Start-up check of the model's own files, before any load. Raises
        models.folder_spec.SpecError listing every problem; the default checks nothing."""

    @abc.abstractmethod
    def load(self) -> None:
        """Read weights and prepare inference. Called once, before any `predict()`."""

    def describe(self) -> dict:
        """Static facts for /models: format, weights or files, preprocessing."""
        return {}

    def network_tensors(self) -> NetworkTensors | None:
        """The network's own tensors, once loaded, for clients that send its input tensor
        themselves; None where the model offers none (the default: its network takes no fixed
        tensor, or runs in steps no client could feed)."""
        return None

    def infer_tensors(self, batch: np.ndarray) -> list[np.ndarray]:
        """The network on a batch of its own input tensor (dtype and shape as network_tensors()
        says): its outputs in that order, batch first. Called only where network_tensors()
        offers tensors, from many threads at once."""
        raise NotImplementedError(f"model '{self.name}' offers no network tensors")

    def load_failure(self, exc: Exception) -> str:
        """What an operator should read when `load()` raised `exc`: the cause, and the fix.
        Never a path outside MODELS_DIR, never the exception's own text (it may hold both)."""
        if isinstance(exc, ModelUnavailable):
            return exc.reason
        return f"the model could not be loaded ({type(exc).__name__})"


class Classifier(Model):
    task = CLASSIFICATION

    @abc.abstractmethod
    def predict(self, images: list[Image.Image]) -> np.ndarray:
        """Probabilities, shape (len(images), len(labels)), for upright RGB images."""


class Detector(Model):
    task = DETECTION

    @abc.abstractmethod
    def predict(self, images: list[Image.Image], min_score: float) -> list[list[Detection]]:
        """Per image, the detections with score >= min_score, in any order."""


@dataclasses.dataclass(frozen=True, eq=False)
class Face:
    box: tuple[int, int, int, int]   # x1, y1, x2, y2 in the input image's pixels
    score: float                     # the detector's confidence, 0-1
    embedding: np.ndarray | None     # float32, `FaceModel.embedding_size` values; None when not asked for


class FaceModel(Model):
    """Finds faces and describes each one as an embedding: two faces of one person lie closer
    (Euclidean distance) than `same_person_distance`, the model's published threshold. The data
    plane stores and searches the embeddings; the model never sees who is who."""
    task = FACE
    embedding_size: int
    same_person_distance: float
    # The detector's own operating point on the 0-1 score scale: registering and recognising
    # find faces at it; a client's min_confidence on detection moves it.
    default_min_score: float

    @property
    def labels(self) -> Sequence[str]:
        return ("face",)

    @abc.abstractmethod
    def predict(self, images: list[Image.Image], min_score: float, embed: bool) -> list[list[Face]]:
        """Per image, the faces with score >= min_score, each with its embedding when `embed`
        (detection alone is much cheaper), in any order."""
