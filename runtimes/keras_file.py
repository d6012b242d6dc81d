"""A user's full Keras model (`.keras` or `.h5`), run through one traced tf.function."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from runtimes.base import Executor, TensorInfo


class KerasFileExecutor(Executor):

    def __init__(self, path: Path, threads: int | None = None):
        """`threads`: TensorFlow's pools are the process' (runtimes.frameworks sets them)."""
        import keras
        import tensorflow as tf

        model = keras.models.load_model(str(path), compile=False)
        shape = tuple(model.input_shape)
        self.input = TensorInfo("input", tuple(d if d else None for d in shape), np.dtype(np.float32))
        outputs = model.outputs
        self.outputs = [TensorInfo(f"output_{i}", tuple(d if d else None for d in o.shape), np.dtype(np.float32))
                        for i, o in enumerate(outputs)]
        self._model = model
        self._infer = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def _invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        result = self._infer(batch)
        if not isinstance(result, (list, tuple)):
            result = [result]
        return [np.asarray(r) for r in result]
