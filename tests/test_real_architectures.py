"""The real loading code on the real architectures (random weights, official file names)."""
from __future__ import annotations

import importlib
import io
import logging

import numpy as np
import pytest

from app import create_app
from bench.random_weights import sample_image
from config import Settings
from detectors.imageai_yolo import letterboxed
from models.builtins import BUILTINS, CATALOG
from runtimes import file_digests
from runtimes import openvino as ov_runtime
from tests.support import imaging
from tests.support.detections import (
    assert_same_detections,
    imageai_reference,
    load_detector,
    ours,
    photos,
    torchvision_reference,
    unpaired,
)

pytestmark = pytest.mark.slow


def post_image(client, path, data, query=""):
    return client.post(path + query, data={"image": (io.BytesIO(data), "x.png")},
                       content_type="multipart/form-data")


@pytest.mark.parametrize("runtime", ["openvino", "framework"])
@pytest.mark.parametrize("name", [n for n, row in BUILTINS.items() if row.task == "classification"])
def test_classifier_matches_the_reference_keras_pipeline(name, runtime, random_models_dir):
    """For an image already at the input size the service equals preprocess_input → model,
    with the default runtime (OpenVINO) and with its framework (TensorFlow)."""
    spec = BUILTINS[name].architecture
    settings = Settings(classification_enabled=True, classification_models=(name,),
                        models_dir=random_models_dir, model_download=False, inference_runtime=runtime)
    client = create_app(settings).test_client()
    images = [sample_image(spec["side"], spec["side"], seed) for seed in (1, 2)]

    module = importlib.import_module(f"keras.applications.{spec['module']}")
    reference_model = getattr(module, spec["constructor"])(weights=str(CATALOG[name].path(random_models_dir)))
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
    assert (details["runtime"], details["device"]) == ("openvino" if runtime == "openvino" else "tensorflow", "cpu")


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
def test_damaged_weight_file_fails_clearly_and_the_service_stays_up(name, damage, random_models_dir, tmp_path,
                                                                    caplog):
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
    # The weights' failure, not OpenVINO's: no fallback to the framework was tried.
    assert "instead of OpenVINO" not in caplog.text


def test_missing_weights_without_download_name_file_url_and_command(tmp_path):
    settings = Settings(detection_enabled=True, detection_models=("retina",), models_dir=tmp_path,
                        model_download=False)
    client = create_app(settings).test_client()
    response = post_image(client, "/detect-objects", imaging.jpeg())
    assert response.status_code == 503
    message = response.get_json()["error"]["message"]
    spec = CATALOG["retina"]
    assert spec.filename in message and spec.url in message and "python -m models.download retina" in message


@pytest.fixture(scope="module")
def calibrated_dir(tmp_path_factory):
    """Detectors with random weights calibrated to many candidates with distinct scores
    (thousands past YOLO's objectness gate; ~300 for RetinaNet, whose plain random weights
    score every anchor near torchvision's 0.01 prior, so nothing would pass 0.05)."""
    from bench.random_weights import write_weights

    models_dir = tmp_path_factory.mktemp("calibrated")
    # YOLO's on 5 calibration photos (11 by default: half a minute more). RetinaNet's on 11: on 5,
    # two anchors of one odd-sized image score exactly alike at the 0.3 gate, and torchvision's
    # top-k keeps the other one.
    for name, candidates, count in (("tiny_yolo", 1000, 5), ("yolo", 2000, 5), ("retina", 300, 11)):
        write_weights(name, models_dir, candidates=candidates, photos=count)
    return models_dir


@pytest.mark.parametrize("name", ["tiny_yolo", "yolo"])
def test_openvino_yolo_detections_equal_imageai_s(name, calibrated_dir):
    """The conv body on OpenVINO, ImageAI's detection layers, thresholds and NMS in numpy:
    ImageAI's detectObjectsFromImage one to one (same labels, boxes within 1 px, scores within
    1e-3) on random scenes and the sample photos, thousands of detections in all. A class score
    differs from torch's by ~5e-6 on OpenVINO: where a random network scores two classes closer
    than that, the label may swap (box and score still equal); at most one in a thousand."""
    detector = load_detector(name, "openvino", calibrated_dir)
    scenes = [sample_image(*size, seed) for seed, size in ((5, (416, 416)), (6, (640, 480)), (7, (300, 500)))]
    compared, ties = 0, []
    for image in scenes + photos():
        compared += assert_same_detections(ours(detector, image, 0.3), imageai_reference(detector, np.asarray(image)),
                                           ties)
    assert compared > 3000 and len(ties) <= compared // 1000, ties


@pytest.mark.parametrize("name", ["tiny_yolo", "yolo"])
def test_yolo_worst_case_plain_random_weights(name, random_models_dir):
    """Plain random weights: thousands of candidates past the objectness gate, a hard test of
    the NMS. On torch (INFERENCE_RUNTIME=framework) the answer is ImageAI's exactly. On
    OpenVINO the network's outputs are torch's within float32 rounding (scores 1 ulp, 6e-8;
    boxes 3e-5 px), and numpy's exp (its decoding) differs from torch's by an ulp here and
    there, but here every objectness lies within 0.5 +- 0.01, thousands of them within a few
    ulps of each other and many exactly equal: a 1-ulp difference reorders the greedy NMS among
    them, and equal ones keep their candidate order where ImageAI's unstable torch.sort leaves
    its own. TinyYOLOv3 comes out identical, YOLOv3 within the 3% asserted below. Real (and
    calibrated, above) weights spread the scores, and the detections are identical."""
    on_torch = load_detector(name, "framework", random_models_dir)
    on_openvino = load_detector(name, "openvino", random_models_dir)
    compared = differing = 0
    for seed, size in ((5, (416, 416)), (6, (640, 480)), (7, (300, 500))):
        image = sample_image(*size, seed)
        inputs = letterboxed(np.asarray(image))
        network, converted = on_torch._forward(inputs).numpy(), on_openvino._forward(inputs)
        np.testing.assert_allclose(converted[..., 4:], network[..., 4:], rtol=0, atol=1e-6)  # scores
        np.testing.assert_allclose(converted[..., :4], network[..., :4], rtol=0, atol=1e-3)  # boxes, px
        reference = imageai_reference(on_torch, np.asarray(image))
        exact = [(label, round(score * 100, 2), box) for label, score, box in reference]
        assert [(label, round(score * 100, 2), box) for label, score, box in ours(on_torch, image, 0.3)] == exact
        left, right = unpaired(ours(on_openvino, image, 0.3), reference)
        compared, differing = compared + len(reference), differing + max(len(left), len(right))
    assert compared > 2000
    assert differing <= 0.03 * compared, (differing, compared)


def test_openvino_retinanet_equals_torchvision(calibrated_dir):
    """RetinaNet's convolutions on OpenVINO with torchvision's transform, anchors, decoding and
    NMS made again in numpy: the detections of torchvision's RetinaNet.forward (ImageAI's
    path), at a photo's size, portrait, landscape and tiny. A 2000x1 strip, which torchvision
    resizes to 0 rows (and raises), finds nothing. (Not compared: an image of a few pixels
    blown up ~100 times, such as 1x1, is flat over whole regions, where thousands of anchors
    score exactly alike: torch's topk keeps some of them in an order of its own, and even
    torchvision's own steps on OpenVINO's outputs keep others there.)"""
    from PIL import Image

    detector = load_detector("retina", "openvino", calibrated_dir)
    compared = 0
    odd = [sample_image(200, 1500, 8), sample_image(1500, 200, 9), sample_image(12, 9, 12), sample_image(32, 24, 13)]
    for image in [sample_image(640, 480, 6)] + photos() + odd:
        compared += assert_same_detections(ours(detector, image, 0.05), torchvision_reference(detector, image, 0.05))
    assert compared > 300
    strip = Image.new("RGB", (2000, 1), (90, 140, 200))
    assert ours(detector, strip, 0.05) == []
    with pytest.raises(RuntimeError):
        torchvision_reference(detector, strip, 0.05)


def test_the_retinanet_steps_a_conversion_records_are_imageai_s_network_s(calibrated_dir):
    """A start from the cache runs torchvision's steps in numpy with the settings the conversion
    recorded in the entry: every one is the loaded network's (and the unit tests' table), and
    the cell anchors they give are its anchor generator's."""
    from detectors import imageai_retinanet
    from tests.test_imageai_retinanet import STEPS

    loaded = load_detector("retina", "framework", calibrated_dir)._detector._ObjectDetection__model
    steps = load_detector("retina", "openvino", calibrated_dir)._forward.steps
    transform, anchors, coder = loaded.transform, loaded.anchor_generator, loaded.box_coder
    assert (transform.fixed_size, loaded.training) == (None, False)   # what the steps implement
    assert (steps.min_size, steps.max_size, steps.image_mean, steps.image_std, steps.size_divisible) == (
        transform.min_size[-1], transform.max_size, tuple(transform.image_mean), tuple(transform.image_std),
        transform.size_divisible)
    assert (steps.anchor_sizes, steps.aspect_ratios) == (anchors.sizes, anchors.aspect_ratios)
    assert (steps.box_weights, steps.bbox_xform_clip) == (coder.weights, coder.bbox_xform_clip)
    assert (steps.score_thresh, steps.topk_candidates, steps.nms_thresh, steps.detections_per_img) == (
        loaded.score_thresh, loaded.topk_candidates, loaded.nms_thresh, loaded.detections_per_img)
    assert steps == STEPS
    for cell, sizes, ratios in zip(anchors.cell_anchors, steps.anchor_sizes, steps.aspect_ratios, strict=True):
        assert (imageai_retinanet.cell_anchors(sizes, ratios) == cell.numpy()).all()


@pytest.mark.parametrize("name", ["tiny_yolo", "retina"])
def test_a_detector_started_from_the_cache_answers_as_when_converted(name, calibrated_dir, tmp_path, caplog):
    """A start from the converted-model cache (no ImageAI network loaded: YOLO's detection layers
    made again from the anchors the entry recorded, RetinaNet's steps from the settings it
    recorded) gives the detections of the start that converted, box for box."""
    weights = CATALOG[name].path(tmp_path)
    weights.parent.mkdir(parents=True)
    weights.symlink_to(CATALOG[name].path(calibrated_dir))
    caplog.set_level(logging.INFO, logger="runtimes.openvino")
    converted = load_detector(name, "openvino", tmp_path)
    assert "saved to MODELS_DIR/.openvino" in caplog.text
    caplog.clear()
    cached = load_detector(name, "openvino", tmp_path)
    assert "read from the cache" in caplog.text and "saved to" not in caplog.text
    assert len([p for p in (tmp_path / ".openvino").glob("*.json") if p.name != file_digests.MEMO_NAME]) == 1
    assert cached._detector is None   # no ImageAI network loaded
    if name == "retina":
        assert cached._forward.steps == converted._forward.steps
    min_score = 0.05 if name == "retina" else 0.3
    compared = 0
    # RetinaNet: one scene (~300 detections; each image is ~800x1000 pixels at its network).
    for image in [sample_image(640, 480, 6)] + ([] if name == "retina" else photos()):
        compared += assert_same_detections(ours(cached, image, min_score), ours(converted, image, min_score))
    assert compared > 100


# A fresh process: loads RetinaNet on OpenVINO from MODELS_DIR (argv[1]), detects in one image
# (argv[2]), prints its runtime, the framework modules imported and the detections (JSON).
_SERVE_FROM_CACHE = """
import json, sys
from pathlib import Path
from PIL import Image
from contract import InferenceOptions
from registry import create_model

detector = create_model("detection", "retina", Path(sys.argv[1]), download=False,
                        options=InferenceOptions(runtime="openvino"))
detector.load()
found = detector.predict([Image.open(sys.argv[2]).convert("RGB")], 0.05)[0]
frameworks = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "imageai", "tensorflow", "keras"))
print(json.dumps({"runtime": detector.runtime, "frameworks": frameworks,
                  "found": [[d.label, d.score, list(d.box)] for d in found]}))
"""


def test_a_retinanet_start_from_the_cache_imports_no_framework(calibrated_dir, tmp_path):
    """A replica serving from the converted-model cache never imports torch, torchvision or
    ImageAI (nor TensorFlow): a fresh process loads RetinaNet from the cache filled here, serves
    an image with none of them imported, and finds what the converting process finds."""
    import json
    import subprocess
    import sys

    from tests.support.paths import ROOT

    converted = load_detector("retina", "openvino", calibrated_dir)   # converts, unless a test before did
    image = sample_image(640, 480, 6)
    image.save(tmp_path / "scene.png")
    answer = subprocess.run([sys.executable, "-c", _SERVE_FROM_CACHE, str(calibrated_dir), str(tmp_path / "scene.png")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert answer.returncode == 0, answer.stderr[-3000:]
    served = json.loads(answer.stdout.splitlines()[-1])
    assert (served["runtime"], served["frameworks"]) == ("openvino", [])
    assert assert_same_detections([tuple(d) for d in served["found"]], ours(converted, image, 0.05)) > 100


@pytest.mark.parametrize("name", ["tiny_yolo", "retina"])
def test_a_conversion_wrong_only_at_the_serving_size_is_neither_used_nor_cached(name, calibrated_dir, tmp_path,
                                                                                   monkeypatch):
    """A start from the cache checks a 128x128 probe only; every conversion is also checked at
    the size requests are served at (YOLO's 416, RetinaNet's ~800x1088 for a 640x480 photo)
    before it is cached. A network right on the probe and wrong at that size (a kernel fault at
    one shape) falls back to torch and leaves no entry."""
    from registry import create_model

    weights = CATALOG[name].path(tmp_path)
    weights.parent.mkdir(parents=True)
    weights.symlink_to(CATALOG[name].path(calibrated_dir))
    real = ov_runtime.CompiledNetwork.__call__

    def wrong_above_the_probe(self, *inputs):
        outputs = real(self, *inputs)
        return outputs if inputs[0].shape[-1] <= 128 else [o * np.float32(1.01) + 1 for o in outputs]

    monkeypatch.setattr(ov_runtime.CompiledNetwork, "__call__", wrong_above_the_probe)
    detector = create_model("detection", name, tmp_path, download=False)
    detector.load()
    assert detector.runtime == "torch"
    assert "differs from the framework's" in detector.describe()["runtime_reason"]
    assert not [p for p in (tmp_path / ".openvino").glob("*") if p.name != file_digests.MEMO_NAME]


@pytest.mark.parametrize("name, runtime", [("tiny_yolo", "openvino"), ("tiny_yolo", "framework"),
                                           ("yolo", "openvino"), ("retina", "openvino")])
def test_a_micro_batch_answers_as_each_image_alone(name, runtime, calibrated_dir):
    """One predict() over images of several sizes (YOLO: one stacked network call; RetinaNet:
    one call per image, three scenes only: each is ~800x1000 pixels at its network) gives each
    image the detections it gets alone, box for box."""
    detector = load_detector(name, runtime, calibrated_dir)
    min_score = 0.05 if name == "retina" else 0.3
    images = [sample_image(640, 480, 6), sample_image(300, 500, 7), sample_image(640, 480, 8)]
    images += [] if name == "retina" else photos()
    together = detector.predict(images, min_score)
    assert len(together) == len(images)
    compared = 0
    for image, found in zip(images, together):
        alone = ours(detector, image, min_score)
        compared += assert_same_detections([(d.label, d.score, list(d.box)) for d in found], alone)
    assert compared > 300


def test_letterboxed_equals_imageai_s_prepare_image_of_the_bgr_pixels():
    """The YOLO input built from the RGB pixels (numpy, no torch) is exactly ImageAI's tensor
    from the BGR array."""
    from imageai.yolov3.utils import prepare_image

    for size, seed in (((640, 480), 1), ((300, 500), 2), ((417, 415), 3)):
        rgb = np.asarray(sample_image(*size, seed))
        expected = prepare_image(np.ascontiguousarray(rgb[:, :, ::-1]), (416, 416)).numpy()
        got = letterboxed(rgb)
        assert isinstance(got, np.ndarray)
        assert got.dtype == expected.dtype and got.shape == expected.shape == (1, 3, 416, 416)
        assert bool((got == expected).all())


@pytest.mark.parametrize("name", ["tiny_yolo", "retina"])
def test_a_strip_of_pixels_finds_nothing_and_spoils_no_batch(name, calibrated_dir):
    """A 2000x1 image letterboxes (YOLO) or resizes (RetinaNet) to under one pixel, where ImageAI
    and torchvision raise. YOLO letterboxes it to one row (the network answers for the grey
    canvas around it: boxes clipped to the strip); RetinaNet finds nothing in it. Either way
    the image batched with it gets its own detections."""
    from PIL import Image

    detector = load_detector(name, "openvino", calibrated_dir)
    scene = sample_image(640, 480, 6)
    strips = [Image.new("RGB", (2000, 1), (90, 140, 200)), Image.new("RGB", (1, 3000), (20, 20, 20))]
    found = detector.predict([strips[0], scene, strips[1]], 0.3)
    for strip, detections in zip(strips, (found[0], found[2])):
        if name == "retina":
            assert detections == []
        width, height = strip.size
        assert all(0 <= d.box[0] <= d.box[2] <= width and 0 <= d.box[1] <= d.box[3] <= height for d in detections)
    assert_same_detections([(d.label, d.score, list(d.box)) for d in found[1]], ours(detector, scene, 0.3))
