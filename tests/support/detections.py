"""Detectors loaded on a chosen runtime, ImageAI's own answers, and the one-to-one comparison of
two detection lists (same labels, boxes within 1 px, scores within 1e-3)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from bench.detector_batches import unpaired
from contract import InferenceOptions
from registry import create_model
from runtimes import frameworks
from tests.support.paths import SHARED

PHOTOS = [SHARED / "images" / "darknet" / "dog.jpg", SHARED / "images" / "ultralytics" / "bus.jpg"]


def load_detector(name, runtime, models_dir):
    """The built-in detector loaded on `runtime`: openvino, or its framework (torch)."""
    options = InferenceOptions(runtime="openvino" if runtime == "openvino" else "framework")
    frameworks.require({frameworks.TORCH}, options)
    detector = create_model("detection", name, models_dir, download=False, options=options)
    detector.load()
    assert detector.runtime == ("openvino" if runtime == "openvino" else "torch")
    return detector


def photos() -> list[Image.Image]:
    """The sample photos (required: in CI ../shared is always there)."""
    missing = [p for p in PHOTOS if not p.exists()]
    assert not missing, f"sample photos missing: {missing}"
    return [Image.open(p).convert("RGB") for p in PHOTOS]


def imageai_of(detector):
    """ImageAI's ObjectDetection with the detector's weights: the one the detector runs, or
    (on OpenVINO, where a YOLO detector holds none) one loaded now."""
    if detector._detector is None:
        detector._detector = detector.build(detector.weights.path(detector.models_dir))
    return detector._detector


def imageai_reference(detector, rgb):
    """ImageAI's own detectObjectsFromImage on the BGR array its YOLO path expects."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    _, found = imageai_of(detector).detectObjectsFromImage(
        input_image=bgr, output_type="array", minimum_percentage_probability=30)
    return [(r["name"], r["percentage_probability"] / 100, r["box_points"]) for r in found]


def torchvision_reference(detector, image, min_score):
    """RetinaNet.forward of torchvision (what ImageAI runs), clipped as the service clips."""
    import torch

    network = imageai_of(detector)._ObjectDetection__model
    classes = imageai_of(detector)._ObjectDetection__classes
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255.0)
    with torch.no_grad():
        output = network([tensor])[0]
    width, height = image.size
    return [(classes[label], score, [min(max(int(v), 0), side) for v, side in zip(box, (width, height) * 2)])
            for box, score, label in zip(output["boxes"].tolist(), output["scores"].tolist(),
                                         output["labels"].tolist()) if score >= min_score]


def ours(detector, image, min_score):
    return [(d.label, d.score, list(d.box)) for d in detector.predict([image], min_score)[0]]


def assert_same_detections(found, reference, class_ties: list | None = None) -> int:
    """One to one, in any order (boxes of one class with equal scores come out in either
    order); returns the number of detections compared. With `class_ties`, a detection whose box
    and score match but whose label differs is collected there instead of failing: two classes
    scored within the two runtimes' float32 difference (~1e-5) of each other swap places."""
    assert len(found) == len(reference), (len(found), len(reference))
    left, right = unpaired(found, reference)
    if class_ties is not None and left:
        unlabelled = unpaired([("?", score, box) for _, score, box in left], [("?", s, b) for _, s, b in right])
        if unlabelled == ([], []):
            class_ties += left
            left, right = [], []
    assert (left, right) == ([], []), (left[:10], right[:10])
    return len(reference)
