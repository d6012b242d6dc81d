"""The interface every classifier implements; the service needs nothing else from a model."""
from __future__ import annotations

import abc

import numpy as np
from PIL import Image


class Classifier(abc.ABC):
    name: str
    frameworks: frozenset[str] = frozenset()

    @property
    @abc.abstractmethod
    def input_size(self) -> tuple[int, int]:
        """(height, width) the whole image is resized to; None while unknown."""

    @property
    @abc.abstractmethod
    def labels(self) -> list[str]:
        """Class names, index i = output i. Available after `load`."""

    def describe(self) -> dict:
        """Static facts for /models: format, weights or files, preprocessing."""
        return {}

    @abc.abstractmethod
    def load(self) -> None:
        """Read weights and prepare inference. Called once, before any `predict`."""

    @abc.abstractmethod
    def predict(self, images: list[Image.Image]) -> np.ndarray:
        """Probabilities, shape (len(images), len(labels)), for upright RGB images."""
