"""A user's own classifier from a model folder (Keras, TFLite, ONNX, or a remote inference engine)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from contract import Classifier
from models.folder_model import FolderModel


class FolderClassifier(FolderModel, Classifier):
    @property
    def batchable(self) -> bool:
        # The format says whether one call answers a batch (a Keras model, an engine's one
        # request); TFLite and ONNX here run image by image anyway.
        return self.format.batches

    def check_outputs(self, executor, where):
        shape = executor.outputs[0].shape
        classes = shape[-1]
        if len(executor.outputs) != 1 or len(shape) != 2:
            return [f"{where}: {self.source_field} must have one output of shape [batch, classes]; it has "
                    f"{[list(o.shape) for o in executor.outputs]}"]
        if classes != len(self.spec.labels):
            return [f"{where}: 'labels' has {len(self.spec.labels)} lines but the model has "
                    f"{classes} outputs"]
        return []

    def predict(self, images: list[Image.Image]) -> np.ndarray:
        batch, _ = self.inputs(images)
        scores = self._executor.run(batch)[0].astype(np.float64)
        if self.spec.output == "logits":
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
        return scores
