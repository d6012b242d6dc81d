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

import importlib
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from classifiers import imagenet
from contract import STRETCH, Classifier, NetworkTensors, TensorInfo
from models.builtin_model import BuiltinModel
from runtimes import frameworks, openvino

log = logging.getLogger(__name__)


def _tensorflow_device() -> str:
    import tensorflow as tf
    return "cuda:0" if tf.config.list_logical_devices("GPU") else "cpu"


# keras.applications' preprocess_input modes: the ImageNet means (and deviations) of each.
_MODES = {"torch": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "caffe": ((103.939, 116.779, 123.68), None)}


def preprocess(batch: np.ndarray, mode: str) -> np.ndarray:
    """keras.applications' preprocess_input of a float32 NHWC batch (in place, as Keras does),
    step for step as keras.src.applications.imagenet_utils computes it, so the answers are the
    same bit for bit without importing Keras (a test compares them)."""
    if mode == "tf":
        batch /= 127.5
        batch -= 1.0
        return batch
    if mode == "torch":
        batch /= 255.0
    else:   # caffe: RGB to BGR, then the means
        batch = batch[..., ::-1]
    mean, std = _MODES[mode]
    for channel in range(3):
        batch[..., channel] -= mean[channel]
    for channel in range(3 if std else 0):
        batch[..., channel] /= std[channel]
    return batch


class KerasApplicationClassifier(BuiltinModel, Classifier):
    """A built-in row's `architecture`: module (keras.applications.<module>), constructor (its
    class), side (the square input) and preprocess (the module's preprocess_input mode)."""
    framework = frameworks.TENSORFLOW
    framework_label = "TensorFlow"
    frameworks = frozenset({frameworks.TENSORFLOW})
    batchable = True          # one call serves any batch size
    resize_mode = STRETCH

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        architecture = self.builtin.architecture
        self.module_name, self.constructor = architecture["module"], architecture["constructor"]
        self.side, self.mode = architecture["side"], architecture["preprocess"]
        self._labels: list[str] = imagenet.labels()
        self._infer = None        # preprocessed float32 batch -> probabilities

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.side, self.side)

    @property
    def labels(self) -> list[str]:
        return self._labels

    @property
    def class_ids(self) -> list[str]:
        """WordNet ids (n02124075), as Keras' decode_predictions gives them."""
        return imagenet.wordnet_ids()

    @property
    def device(self) -> str:
        return _tensorflow_device() if self._runtime == self.framework else self.openvino_devices

    def described(self) -> dict:
        return {"format": "keras_applications", "architecture": self.constructor,
                "preprocessing": f"keras.applications.{self.module_name}.preprocess_input", "resize": STRETCH}

    def _module(self):
        return importlib.import_module(f"keras.applications.{self.module_name}")

    def build(self, weights_path: Path):
        """The Keras model with the given weights file (the official legacy HDF5 layout)."""
        return getattr(self._module(), self.constructor)(weights=str(weights_path))

    def gpu_in_use(self) -> str | None:
        if _tensorflow_device() == "cpu":
            return None
        log.info("model '%s': a GPU is visible to TensorFlow, which runs the model there", self.name)
        return "a GPU is visible to TensorFlow: its GPU path runs the model"

    def load_framework(self, model) -> None:
        """One tf.function traced for any batch size, traced now rather than on a request."""
        import tensorflow as tf

        side = self.side
        traced = tf.function(lambda x: model(x, training=False),
                             input_signature=[tf.TensorSpec([None, side, side, 3], tf.float32)])
        traced(tf.zeros([1, side, side, 3]))
        self._infer = lambda batch: np.asarray(traced(batch))

    def load_openvino(self, model: openvino.FrameworkModel, weights: Path | None) -> openvino.CompiledNetwork:
        """The model compiled by OpenVINO (batch 1, one call per image), checked against Keras'
        answer on a probe: computed now where the cache has no entry, else the one it recorded."""
        side = self.side
        probe = self._preprocess(openvino.probe_batch(side, side))

        def source():
            keras_model = model()
            return openvino.Source(expected=[np.asarray(keras_model(probe, training=False))],
                                   convert=lambda: openvino.convert(keras_model))

        conversion = openvino.Conversion(
            key=openvino.cache_key(self.name, weights, self.source_versions(), code=(__file__,),
                                   models_dir=self.models_dir),
            probe=lambda network: network.per_image(probe), source=source,
            input_shapes=[[1, side, side, 3]])
        network = openvino.compile_network(conversion, self.models_dir, self.options)
        self._infer = lambda batch: network.per_image(batch)[0]
        return network

    def _preprocess(self, batch: np.ndarray) -> np.ndarray:
        return preprocess(batch, self.mode)

    def to_array(self, images: list[Image.Image]) -> np.ndarray:
        """The whole image resized (bilinear) to the input size, as float32 RGB 0-255."""
        height, width = self.input_size
        batch = np.empty((len(images), height, width, 3), dtype=np.float32)
        for i, img in enumerate(images):
            if img.size != (width, height):
                img = img.resize((width, height), Image.BILINEAR)
            batch[i] = np.asarray(img, dtype=np.float32)
        return batch

    def network_tensors(self) -> NetworkTensors | None:
        """The network's preprocessed input and its probabilities, once loaded (any batch size:
        OpenVINO's batch-1 network runs a batch image by image)."""
        if self._infer is None:
            return None
        side, float32 = self.side, np.dtype(np.float32)
        return NetworkTensors(TensorInfo("input", (None, side, side, 3), float32),
                              (TensorInfo("predictions", (None, len(self._labels)), float32),),
                              f"RGB 0-255 resized (bilinear) to {side}x{side}, then "
                              f"keras.applications.{self.module_name}.preprocess_input, NHWC")

    def infer_tensors(self, batch: np.ndarray) -> list[np.ndarray]:
        return [self._infer(batch)]

    def predict(self, images: list[Image.Image]) -> np.ndarray:
        # preprocess_input scales float arrays in place: the batch is ours alone.
        batch = self._preprocess(self.to_array(images))
        return self._infer(batch)
