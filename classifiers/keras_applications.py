"""Keras Applications ImageNet classifiers: MobileNetV2, ResNet50, InceptionV3, DenseNet121.

Each model takes its constructor *and* its `preprocess_input` from the same
`keras.applications.<module>`, so a model can never run with another model's
preprocessing. Inference runs through one `tf.function` traced for any batch size.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import numpy as np
from PIL import Image

from classifiers import imagenet
from contract import STRETCH, Classifier
from models.weights import CATALOG, WeightFile, ensure_weights
from runtimes import frameworks


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
    batchable = True          # one traced call serves any batch size
    resize_mode = STRETCH
    runtime = "tensorflow"

    def __init__(self, spec: KerasAppSpec, models_dir: Path, download: bool = True):
        self.spec = spec
        self.name = spec.name
        self.models_dir = Path(models_dir)
        self.download = download
        self._labels: list[str] = imagenet.labels()
        self._infer = None
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
    def device(self) -> str:
        return _tensorflow_device() if self._infer is not None else "cpu"

    def describe(self) -> dict:
        return {"format": "keras", "builtin": True, "architecture": self.spec.constructor,
                "weights": self.spec.weights.filename,
                "preprocessing": f"keras.applications.{self.spec.module}.preprocess_input",
                "resize": STRETCH}

    def load_failure(self, exc: Exception) -> str:
        return self.spec.weights.unreadable(exc)

    def _module(self):
        return importlib.import_module(f"keras.applications.{self.spec.module}")

    def build(self, weights_path: Path):
        """The Keras model with the given weights file (the official legacy HDF5 layout)."""
        return getattr(self._module(), self.spec.constructor)(weights=str(weights_path))

    def load(self) -> None:
        import tensorflow as tf

        path = ensure_weights(self.spec.weights, self.models_dir, download=self.download,
                              check=self.build)
        model = self.build(path)
        self._preprocess = self._module().preprocess_input
        size = self.spec.size
        self._infer = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
        )
        self._model = model
        self._infer(tf.zeros([1, size, size, 3]))  # trace now, not on the first request

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
        return np.asarray(self._infer(batch))
