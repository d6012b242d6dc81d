"""Classifier registry: a public name -> a model instance, not yet loaded.

Built-in names are the Keras Applications models; any other configured name is a user's
model folder `MODELS_DIR/<name>/model.json` whose task is classification.
"""
from __future__ import annotations

from pathlib import Path

from classifiers.base import Classifier
from config import CLASSIFIER_NAMES


def create_classifier(name: str, models_dir: Path, download: bool = True) -> Classifier:
    if name in CLASSIFIER_NAMES:
        from classifiers.keras_applications import SPECS, KerasApplicationClassifier
        return KerasApplicationClassifier(SPECS[name], models_dir, download)
    from classifiers.custom import CustomClassifier
    from models.custom_spec import SpecError, load_spec
    spec = load_spec(Path(models_dir) / name)
    if spec.task != "classification":
        raise SpecError([f"MODELS_DIR/{name}/model.json: 'task' is {spec.task!r}, but the model is "
                         "configured in IMAGE_CLASSIFICATION_MODEL"])
    return CustomClassifier(spec)
