"""Model folders for the real small models in ../shared, built in a temporary MODELS_DIR.

The model files are linked, never copied into the repository. Locally a missing ../shared
skips these tests with a reason; in CI (CI=true) it fails them.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support.paths import SHARED

FOLDERS = {
    "mobilenet_v2_quant": {
        "model": "models/classify/mobilenet_v2_1.0_224_quant.tflite",
        "labels": "labels/imagenet_labels_1001_with_background.txt",
        "json": {"task": "classification", "format": "tflite", "file": "model.tflite",
                 "labels": "labels.txt",
                 # Quant scale 1/128, zero point 128: (p - 128) / 128 quantizes back to p exactly.
                 "input": {"resize": "stretch", "mean": [128, 128, 128], "std": [128, 128, 128]},
                 "output": "softmax"},
    },
    "yolov8n_int8": {
        "model": "models/detect/yolov8n_int8.tflite",
        "labels": "labels/coco80.txt",
        "json": {"task": "detection", "format": "tflite", "file": "model.tflite", "labels": "labels.txt",
                 "input": {"resize": "letterbox", "mean": [0, 0, 0], "std": [255, 255, 255]},
                 "layout": "yolov8", "box_units": "normalized", "iou_threshold": 0.45},
    },
    "yolov8n_full_int8": {
        "model": "models/detect/yolov8n_full_integer_quant.tflite",
        "labels": "labels/coco80.txt",
        "json": {"task": "detection", "format": "tflite", "file": "model.tflite", "labels": "labels.txt",
                 "input": {"resize": "letterbox", "mean": [0, 0, 0], "std": [255, 255, 255]},
                 "layout": "yolov8", "box_units": "normalized"},
    },
    "yolov5n_onnx": {
        "model": "models/detect/yolov5n_640.onnx",
        "labels": "labels/coco80.txt",
        "json": {"task": "detection", "format": "onnx", "file": "model.onnx", "labels": "labels.txt",
                 "input": {"size": [640, 640], "resize": "letterbox", "mean": [0, 0, 0], "std": [255, 255, 255]},
                 "layout": "yolov5", "box_units": "pixels"},
    },
}


def require_shared() -> Path:
    if not SHARED.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {SHARED} (real models and photos) is missing")
        pytest.skip(f"{SHARED} is missing: the real small models and photos live there")
    return SHARED


def build_folder(models_dir: Path, name: str) -> Path:
    shared = require_shared()
    entry = FOLDERS[name]
    folder = models_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    model_file = folder / entry["json"]["file"]
    if not model_file.exists():
        model_file.symlink_to(shared / entry["model"])
    shutil.copyfile(shared / entry["labels"], folder / "labels.txt")
    (folder / "model.json").write_text(json.dumps(entry["json"], indent=2))
    return folder


def photo(relative: str) -> Path:
    return require_shared() / "images" / relative
