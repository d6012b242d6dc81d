"""Classifier registry: public model name -> a model instance, not yet loaded."""
from __future__ import annotations

from pathlib import Path

from classifiers.base import Classifier


def create_classifier(name: str, models_dir: Path, download: bool = True) -> Classifier:
    from classifiers.keras_applications import SPECS, KerasApplicationClassifier

    return KerasApplicationClassifier(SPECS[name], models_dir, download)
