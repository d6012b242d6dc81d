"""A user's own classifier from a model folder (Keras, TFLite, ONNX, or a remote inference engine)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from contract import Classifier
from models.folder_model import FolderModel


class FolderClassifier(FolderModel, Classifier):
    @property
    def batchable(self) -> bool:
        # Keras runs a batch as one call, and a remote engine gets one request for the whole
        # batch; TFLite and ONNX here run image by image anyway.
        return self.spec.format == "keras" or self.spec.remote is not None

    def check_outputs(self, runtime, where):
        shape = runtime.outputs[0].shape
        classes = shape[-1]
        if len(runtime.outputs) != 1 or len(shape) != 2:
            return [f"{where}: {self.source_field} must have one output of shape [batch, classes]; it has "
                    f"{[list(o.shape) for o in runtime.outputs]}"]
        if classes != len(self.spec.labels):
            return [f"{where}: 'labels' has {len(self.spec.labels)} lines but the model has "
                    f"{classes} outputs"]
        return []

    def predict(self, images: list[Image.Image]) -> np.ndarray:
        batch, _ = self.inputs(images)
        scores = self._runtime.run(batch)[0].astype(np.float64)
        if self.spec.output == "logits":
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
        return scores
