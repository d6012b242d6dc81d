"""The real loading code on the real architectures (random weights, official file names)."""
from __future__ import annotations

import importlib
import io

import numpy as np
import pytest
from PIL import Image

from app import create_app
from bench.random_weights import sample_image
from classifiers.keras_applications import SPECS as CLASSIFIER_SPECS
from config import Settings
from models.weights import CATALOG
from registry import create_model
from runtimes import frameworks
from tests.support import imaging
from tests.support.paths import SHARED

pytestmark = pytest.mark.slow


def post_image(client, path, data, query=""):
    return client.post(path + query, data={"image": (io.BytesIO(data), "x.png")},
                       content_type="multipart/form-data")


@pytest.mark.parametrize("runtime", ["openvino", "tensorflow"])
@pytest.mark.parametrize("name", list(CLASSIFIER_SPECS))
def test_classifier_matches_the_reference_keras_pipeline(name, runtime, random_models_dir):
    """For an image already at the input size the service equals preprocess_input → model,
    with the default runtime (OpenVINO) and with TensorFlow."""
    spec = CLASSIFIER_SPECS[name]
    settings = Settings(classification_enabled=True, classification_models=(name,),
                        models_dir=random_models_dir, model_download=False, inference_runtime=runtime)
    client = create_app(settings).test_client()
    images = [sample_image(spec.size, spec.size, seed) for seed in (1, 2)]

    module = importlib.import_module(f"keras.applications.{spec.module}")
    reference_model = getattr(module, spec.constructor)(weights=str(CATALOG[name].path(random_models_dir)))
    from classifiers import imagenet
    labels = imagenet.labels()

    answers = []
    for img in images:
        response = post_image(client, "/classify-image", imaging.encode(img, "PNG"), "?top_k=1000")
        assert response.status_code == 200, response.get_data(as_text=True)
        service = {label: pct / 100 for label, pct in response.get_json()}
        assert len(service) == len(set(labels))  # duplicate names (crane, maillot) merge in a dict
        x = module.preprocess_input(np.asarray(img, dtype=np.float32)[None].copy())
        reference = np.asarray(reference_model(x, training=False))[0]
        top = int(reference.argmax())
        assert response.get_json()[0][0] == labels[top]
        for i in np.argsort(-reference)[:50]:
            if labels.count(labels[i]) == 1:
                assert service[labels[i]] == pytest.approx(float(reference[i]), abs=1e-4)
        answers.append(reference)
    # The random weights are input-dependent, so the comparison above means something.
    assert answers[0].argmax() != answers[1].argmax()
    assert np.abs(answers[0] - answers[1]).max() > 0.02
    details = client.get(f"/models/{name}").get_json()
    assert (details["runtime"], details["device"]) == (runtime, "cpu")


def test_classifier_labels_are_keras_imagenet_names(random_models_dir):
    settings = Settings(classification_enabled=True, models_dir=random_models_dir,
                        model_download=False)
    client = create_app(settings).test_client()
    body = post_image(client, "/classify-image", imaging.jpeg(size=(640, 480)), "?top_k=1000").get_json()
    names = {label for label, _ in body}
    assert {"Egyptian_cat", "golden_retriever", "tabby"} <= names
    assert client.get("/ready").status_code == 200


@pytest.mark.parametrize("name", ["yolo", "tiny_yolo", "retina"])
def test_detector_loads_and_answers_in_the_imageai_shape(name, random_models_dir):
    settings = Settings(detection_enabled=True, detection_models=(name,),
                        models_dir=random_models_dir, model_download=False)
    client = create_app(settings).test_client()
    width, height = 320, 200
    response = post_image(client, "/detect-objects", imaging.encode(sample_image(width, height, 3), "PNG"))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    detections = response.get_json()
    assert isinstance(detections, list)  # random weights: no assumption about classes or counts
    for d in detections:
        assert set(d) == {"name", "percentage_probability", "box_points"}
        assert isinstance(d["name"], str) and 30 <= d["percentage_probability"] <= 100
        x1, y1, x2, y2 = d["box_points"]
        assert all(isinstance(v, int) for v in d["box_points"])
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
    probabilities = [d["percentage_probability"] for d in detections]
    assert probabilities == sorted(probabilities, reverse=True)
    ready = client.get("/ready").get_json()
    assert ready["models"][name]["state"] == "ready"


@pytest.mark.parametrize("name", ["mobilenet", "tiny_yolo"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_weight_file_fails_clearly_and_the_service_stays_up(name, damage, random_models_dir, tmp_path):
    spec = CATALOG[name]
    good = spec.path(random_models_dir).read_bytes()
    target = spec.path(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"not weights" * 100)
    task = "classification" if spec.subdir == "classify" else "detection"
    settings = Settings(classification_enabled=task == "classification",
                        detection_enabled=task == "detection",
                        classification_models=(name if task == "classification" else "mobilenet",),
                        detection_models=(name if task == "detection" else "yolo",),
                        models_dir=tmp_path, model_download=False)
    client = create_app(settings).test_client()
    path = "/classify-image" if task == "classification" else "/detect-objects"
    response = post_image(client, path, imaging.jpeg())
    assert response.status_code == 503
    message = response.get_json()["error"]["message"]
    assert spec.filename in message and f"python -m models.download {name}" in message
    assert str(tmp_path) not in response.get_data(as_text=True)
    assert client.get("/health").status_code == 200
    assert client.get("/ready").get_json()["models"][name]["state"] == "failed"


def test_missing_weights_without_download_name_file_url_and_command(tmp_path):
    settings = Settings(detection_enabled=True, detection_models=("retina",), models_dir=tmp_path,
                        model_download=False)
    client = create_app(settings).test_client()
    response = post_image(client, "/detect-objects", imaging.jpeg())
    assert response.status_code == 503
    message = response.get_json()["error"]["message"]
    spec = CATALOG["retina"]
    assert spec.filename in message and spec.url in message and "python -m models.download retina" in message


def load_detector(name, runtime, models_dir):
    frameworks.set_inference(runtime, "f32")
    try:
        detector = create_model("detection", name, models_dir, download=False)
        detector.load()
    finally:
        frameworks.set_inference("openvino", "f32")
    assert detector.runtime == ("openvino" if runtime == "openvino" else "torch")
    return detector


def imageai_reference(detector, rgb):
    """ImageAI's own detectObjectsFromImage on the BGR array its YOLO path expects."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    _, found = detector._detector.detectObjectsFromImage(
        input_image=bgr, output_type="array", minimum_percentage_probability=30)
    return [(r["name"], r["percentage_probability"] / 100, r["box_points"]) for r in found]


def pair_up(ours, reference, same_label=True):
    """Greedy one-to-one pairing: box within 1 px, score within 1e-3 (and the same label).
    Returns what is left unpaired on each side."""
    pool = {}
    for label, score, box in reference:
        pool.setdefault(label if same_label else None, []).append((label, score, box))
    left = []
    for label, score, box in ours:
        candidates = pool.get(label if same_label else None, [])
        for i, (_, other_score, other_box) in enumerate(candidates):
            if abs(other_score - score) <= 1e-3 and max(abs(a - b) for a, b in zip(box, other_box)) <= 1:
                del candidates[i]
                break
        else:
            left.append((label, score, box))
    return left, [d for ds in pool.values() for d in ds]


def assert_same_detections(ours, reference):
    """One to one: same labels, boxes within 1 px, scores within 1e-3; the order is free (boxes
    of one class with equal objectness come out in either order). A label may differ only where
    two classes tie at that tolerance (same box, same score), at most once per 1,000 boxes:
    the networks' float32 arithmetic differs by ~1e-4 (torch's own answer moves that much with
    its thread count), and with random weights a few of thousands of boxes have two classes
    within 1e-5 of each other."""
    left, unpaired = pair_up(ours, reference)
    assert pair_up(left, unpaired, same_label=False) == ([], []), (left, unpaired)
    assert len(left) <= len(reference) // 1000, left


def yolo_inputs():
    """Random scenes (thousands of candidate boxes with random weights) and the sample photos."""
    inputs = [sample_image(*size, seed) for seed, size in ((5, (416, 416)), (6, (640, 480)), (7, (300, 500)))]
    photos = [SHARED / "images" / "darknet" / "dog.jpg", SHARED / "images" / "ultralytics" / "bus.jpg"]
    return inputs + [Image.open(p).convert("RGB") for p in photos if p.exists()]


@pytest.mark.parametrize("runtime", ["tensorflow", "openvino"])
@pytest.mark.parametrize("name", ["tiny_yolo", "yolo"])
def test_fast_yolo_post_processing_is_identical_to_imageai(name, runtime, random_models_dir):
    """Random YOLO weights give thousands of candidate boxes: a hard test of the NMS. On torch
    (INFERENCE_RUNTIME=tensorflow: each model's framework) the answer is ImageAI's exactly; on
    OpenVINO the network's float arithmetic differs in the last bits, so boxes may move by a
    pixel where a coordinate lies on a pixel boundary."""
    detector = load_detector(name, runtime, random_models_dir)
    compared = 0
    for image in yolo_inputs():
        rgb = np.asarray(image)
        ours = [(d.label, d.score, list(d.box)) for d in detector.predict([image], 0.3)[0]]
        reference = imageai_reference(detector, rgb)
        if runtime == "openvino":
            assert_same_detections(ours, reference)
        else:
            assert [(label, round(score * 100, 2), box) for label, score, box in ours] == \
                   [(label, round(score * 100, 2), box) for label, score, box in reference]
        compared += len(reference)
    assert compared > 2000  # the comparison covered real suppression work


def test_openvino_retinanet_equals_torchvision(random_models_dir):
    """RetinaNet's convolutions on OpenVINO, torchvision's own anchors, decoding and NMS:
    the detections of torchvision's RetinaNet.forward."""
    import torch

    detector = load_detector("retina", "openvino", random_models_dir)
    network = detector._detector._ObjectDetection__model
    classes = detector._detector._ObjectDetection__classes
    compared = 0
    for image in (sample_image(640, 480, 6), sample_image(300, 500, 7)):
        ours = [(d.label, d.score, list(d.box)) for d in detector.predict([image], 0.05)[0]]
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255.0)
        with torch.no_grad():
            output = network([tensor])[0]
        width, height = image.size
        reference = [(classes[label], score, [min(max(int(v), 0), side) for v, side in zip(box, (width, height) * 2)])
                     for box, score, label in zip(output["boxes"].tolist(), output["scores"].tolist(),
                                                  output["labels"].tolist()) if score >= 0.05]
        assert_same_detections(ours, reference)
        compared += len(reference)
    assert compared > 5
