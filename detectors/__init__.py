"""Detector registry: public model name -> a model instance, not yet loaded."""
from __future__ import annotations

from pathlib import Path

from detectors.base import Detector


def create_detector(name: str, models_dir: Path, download: bool = True) -> Detector:
    from detectors.imageai_detectors import SPECS, ImageAIDetector

    return ImageAIDetector(SPECS[name], models_dir, download)
