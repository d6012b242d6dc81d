"""Keras Applications ImageNet classifiers: MobileNetV2, ResNet50, InceptionV3, DenseNet121.

Each model takes its constructor *and* its `preprocess_input` from the same
`keras.applications.<module>`, so a model can never run with another model's
preprocessing. Keras builds the model and loads the weights; by default OpenVINO then
executes it on the CPU (runtimes/openvino.py: converted in memory, cached, checked against
Keras' answer on a probe before it serves; a start from the cache checks against the answer
the entry recorded and builds no Keras model). With INFERENCE_RUNTIME=tensorflow, where a GPU
is visible to TensorFlow, or when OpenVINO cannot run it, inference runs through one
`tf.function` traced for any batch size.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from classifiers import imagenet
from contract import STRETCH, Classifier
from models.weights import CATALOG, WeightFile, ensure_weights
from runtimes import frameworks, openvino

log = logging.getLogger(__name__)
TENSORFLOW = "tensorflow"


def create(name: str, models_dir: Path, download: bool = True) -> "KerasApplicationClassifier":
    return KerasApplicationClassifier(SPECS[name], models_dir, download)


def _tensorflow_device() -> str:
    import tensorflow as tf
    return "cuda:0" if tf.config.list_logical_devices("GPU") else "cpu"


@dataclasses.dataclass(frozen=True)
class KerasAppSpec:
    name: str
    module: str       # keras.applications.<module>
    constructor: str  # class in that module
    size: int         # square input side

    @property
    def weights(self) -> WeightFile:
        return CATALOG[self.name]


SPECS = {s.name: s for s in (
    KerasAppSpec("mobilenet", "mobilenet_v2", "MobileNetV2", 224),
    KerasAppSpec("resnet", "resnet50", "ResNet50", 224),
    KerasAppSpec("inception", "inception_v3", "InceptionV3", 299),
    KerasAppSpec("densenet", "densenet", "DenseNet121", 224),
)}


class KerasApplicationClassifier(Classifier):
    frameworks = frozenset({frameworks.TENSORFLOW})
    batchable = True          # one call serves any batch size
    resize_mode = STRETCH

    def __init__(self, spec: KerasAppSpec, models_dir: Path, download: bool = True):
        self.spec = spec
        self.name = spec.name
        self.models_dir = Path(models_dir)
        self.download = download
        self._labels: list[str] = imagenet.labels()
        self.wanted_runtime = frameworks.inference_runtime()
        self.precision = frameworks.inference_precision()
        self._runtime: str | None = None          # what runs it, once loaded
        self._runtime_reason: str | None = None   # why that is not the configured runtime
        self._precision_in_use: str | None = None # OpenVINO's effective precision
        self._infer = None        # preprocessed float32 batch -> probabilities
        self._preprocess = None

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.spec.size, self.spec.size)

    @property
    def labels(self) -> list[str]:
        return self._labels

    @property
    def class_ids(self) -> list[str]:
        """WordNet ids (n02124075), as Keras' decode_predictions gives them."""
        return imagenet.wordnet_ids()

    @property
    def runtime(self) -> str:
        """The configured runtime until loaded; then the one that runs the model."""
        return self._runtime or self.wanted_runtime

    @property
    def device(self) -> str:
        return _tensorflow_device() if self._runtime == TENSORFLOW else "cpu"

    def describe(self) -> dict:
        info = {"format": "keras", "builtin": True, "architecture": self.spec.constructor,
                "weights": self.spec.weights.filename,
                "preprocessing": f"keras.applications.{self.spec.module}.preprocess_input",
                "resize": STRETCH}
        return openvino.with_runtime_details(info, self._runtime, self._precision_in_use, self._runtime_reason)

    def load_failure(self, exc: Exception) -> str:
        return self.spec.weights.unreadable(exc)

    def _module(self):
        return importlib.import_module(f"keras.applications.{self.spec.module}")

    def build(self, weights_path: Path):
        """The Keras model with the given weights file (the official legacy HDF5 layout)."""
        return getattr(self._module(), self.spec.constructor)(weights=str(weights_path))

    def load(self) -> None:
        path = ensure_weights(self.spec.weights, self.models_dir, download=self.download,
                              check=self.build)
        model = openvino.FrameworkModel(lambda: self.build(path))
        self._preprocess = self._module().preprocess_input
        if self.wanted_runtime == openvino.OPENVINO:
            reason = self._gpu_in_use()
            if reason is None:
                infer, reason = openvino.attempt(self.name, "TensorFlow", lambda: self._openvino(model, path), model)
                if infer is not None:
                    self._infer, self._runtime = infer, openvino.OPENVINO
                    return
            self._runtime_reason = reason
        self._infer = self._tensorflow(model())
        self._runtime = TENSORFLOW

    def _gpu_in_use(self) -> str | None:
        """Where TensorFlow sees a GPU, its GPU path runs the model (the reason); else None."""
        if _tensorflow_device() == "cpu":
            return None
        log.info("model '%s': a GPU is visible to TensorFlow, which runs the model there", self.name)
        return "a GPU is visible to TensorFlow: its GPU path runs the model"

    def _tensorflow(self, model):
        """One tf.function traced for any batch size, traced now rather than on a request."""
        import tensorflow as tf

        size = self.spec.size
        traced = tf.function(lambda x: model(x, training=False),
                             input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
        traced(tf.zeros([1, size, size, 3]))
        return lambda batch: np.asarray(traced(batch))

    def _openvino(self, model: openvino.FrameworkModel, weights: Path):
        """The model compiled by OpenVINO (batch 1, one call per image), checked against Keras'
        answer on a probe: computed now where the cache has no entry, else the one it recorded."""
        import keras

        size = self.spec.size
        probe = self._preprocess(openvino.probe_batch(size, size))

        def source():
            keras_model = model()
            return openvino.Source(expected=[np.asarray(keras_model(probe, training=False))],
                                   convert=lambda: openvino.convert(keras_model))

        conversion = openvino.Conversion(
            key=openvino.cache_key(self.name, weights, f"keras{keras.__version__}", code=(__file__,),
                                   models_dir=self.models_dir),
            probe=lambda network: network.per_image(probe), source=source,
            input_shapes=[[1, size, size, 3]])
        network = openvino.compile_network(conversion, self.models_dir, self.precision)
        self._precision_in_use = network.precision
        return lambda batch: network.per_image(batch)[0]

    def to_array(self, images: list[Image.Image]) -> np.ndarray:
        """The whole image resized (bilinear) to the input size, as float32 RGB 0-255."""
        height, width = self.input_size
        batch = np.empty((len(images), height, width, 3), dtype=np.float32)
        for i, img in enumerate(images):
            if img.size != (width, height):
                img = img.resize((width, height), Image.BILINEAR)
            batch[i] = np.asarray(img, dtype=np.float32)
        return batch

    def predict(self, images: list[Image.Image]) -> np.ndarray:
        # preprocess_input scales float arrays in place: the batch is ours alone.
        batch = self._preprocess(self.to_array(images))
        return self._infer(batch)
