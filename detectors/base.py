"""The interface every detector implements."""
from __future__ import annotations

import abc
import dataclasses

from PIL import Image


@dataclasses.dataclass(frozen=True)
class Detection:
    label: str
    score: float                     # 0-1
    box: tuple[int, int, int, int]   # x1, y1, x2, y2 in the input image's pixels


class Detector(abc.ABC):
    name: str
    frameworks: frozenset[str] = frozenset()

    @property
    @abc.abstractmethod
    def labels(self) -> list[str]:
        """Class names the detector can report. Available after `load`."""

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(height, width) of the network input, or None where the network decides."""
        return None

    def describe(self) -> dict:
        """Static facts for /models: format, weights or files."""
        return {}

    @abc.abstractmethod
    def load(self) -> None:
        """Read weights and prepare inference. Called once, before any `detect`."""

    @abc.abstractmethod
    def detect(self, image: Image.Image, min_score: float) -> list[Detection]:
        """Detections with score >= min_score for an upright RGB image, any order."""
