"""Detector registry: a public name -> a model instance, not yet loaded.

Built-in names are ImageAI's detectors; any other configured name is a user's model folder
`MODELS_DIR/<name>/model.json` whose task is detection.
"""
from __future__ import annotations

from pathlib import Path

from config import DETECTOR_NAMES
from detectors.base import Detector


def create_detector(name: str, models_dir: Path, download: bool = True) -> Detector:
    if name in DETECTOR_NAMES:
        from detectors.imageai_detectors import SPECS, ImageAIDetector
        return ImageAIDetector(SPECS[name], models_dir, download)
    from detectors.custom import CustomDetector
    from models.custom_spec import SpecError, load_spec
    spec = load_spec(Path(models_dir) / name)
    if spec.task != "detection":
        raise SpecError([f"MODELS_DIR/{name}/model.json: 'task' is {spec.task!r}, but the model is "
                         "configured in OBJECT_DETECTION_MODEL"])
    return CustomDetector(spec)
