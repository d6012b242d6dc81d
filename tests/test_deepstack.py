"""The DeepStack / CodeProject.AI vision API (api/deepstack.py): shapes, defaults and errors
through HTTP with the fake models; then the real server (`python app.py` under waitress, real
small detectors from ../shared as model folders) driven by requests built the way Frigate's
DeepStack detector plugin builds them, and parsed the way it parses them."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
import requests
from PIL import Image

from api.deepstack import COCO_NAMES, DEFAULT_MIN_CONFIDENCE
from app import create_app
from config import Settings
from contract import Detection, Detector
from tests.support import imaging
from tests.support.fakes import FakeClassifier, FakeDetector
from tests.support.frigate import FrigateDeepStack, frigate_labelmap
from tests.support.http import LEAKS, make_app, multipart
from tests.support.servers import start_server, stop_server, wait_until
from tests.support.shared_models import build_folder, photo

FRAME = imaging.jpeg(size=(320, 320), color=(90, 140, 200))
TIMINGS = {"inferenceMs", "processMs", "analysisRoundTripMs"}
DETECTION_FIELDS = {"success", "message", "count", "predictions", "code"} | TIMINGS


def post(client, path, image=FRAME, **fields):
    """A multipart body as DeepStack clients send it: form fields, then the `image` file part."""
    content_type, body = multipart(fields=fields, files={"image": ("frame.jpg", image)})
    return client.post(path, data=body, content_type=content_type)


def assert_deepstack_error(response, code: int) -> str:
    """DeepStack's error shape, with the HTTP status as its code, and nothing internal in it."""
    assert response.status_code == code, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"success", "error", "code"}
    assert body["success"] is False and body["code"] == code and body["error"]
    for leak in LEAKS:
        assert leak not in body["error"]
    return body["error"]


class UnsortedDetector(Detector):
    """Answers out of order, with labels spelled as ImageAI's YOLO spells them."""

    name = "unsorted"

    @property
    def labels(self):
        return ["motorbike", "person", "tvmonitor"]

    def load(self):
        pass

    def predict(self, images, min_score):
        found = [Detection("motorbike", 0.55, (10, 20, 30, 40)),
                 Detection("person", 0.97, (1, 2, 3, 4)),
                 Detection("tvmonitor", 0.75, (5, 6, 7, 8)),
                 Detection("person", 0.2, (0, 0, 1, 1))]
        return [[d for d in found if d.score >= min_score] for _ in images]


class SlowDetector(FakeDetector):
    """The fake detector, 50 ms a call."""

    def predict(self, images, min_score):
        time.sleep(0.05)
        return super().predict(images, min_score)


# --- shapes and defaults -----------------------------------------------------------------------

def test_detection_answers_deepstacks_shape_with_codeproject_fields(client):
    response = post(client, "/v1/vision/detection", api_key="")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == DETECTION_FIELDS
    assert body["success"] is True and body["code"] == 200
    # The fake finds dog 0.9, cat 0.4 and cat 0.1: the default min_confidence is 0.4, inclusive.
    assert DEFAULT_MIN_CONFIDENCE == 0.4
    assert body["predictions"] == [
        {"label": "dog", "confidence": 0.9, "x_min": 0, "y_min": 0, "x_max": 160, "y_max": 160},
        {"label": "cat", "confidence": 0.4, "x_min": 160, "y_min": 160, "x_max": 320, "y_max": 320}]
    assert body["count"] == 2 and body["message"] == "Found dog, cat"
    assert all(isinstance(body[k], int) for k in TIMINGS)
    assert body["analysisRoundTripMs"] >= body["processMs"] >= body["inferenceMs"] >= 0


def test_timings_say_how_long_the_model_took(tmp_path):
    """`inferenceMs` is the model call: a slow model shows in it, a cache hit has none."""
    client = create_app(Settings(detection_enabled=True, models_dir=tmp_path),
                        detector=SlowDetector()).test_client()
    first = post(client, "/v1/vision/detection").get_json()
    assert first["inferenceMs"] >= 50 and first["processMs"] >= first["inferenceMs"]
    again = post(client, "/v1/vision/detection").get_json()
    assert again["inferenceMs"] == 0 and again["predictions"] == first["predictions"]


def test_min_confidence_is_a_form_field_from_0_to_1(client):
    labels = lambda response: [p["label"] for p in response.get_json()["predictions"]]  # noqa: E731
    assert labels(post(client, "/v1/vision/detection", min_confidence="0.05")) == ["dog", "cat", "cat"]
    assert labels(post(client, "/v1/vision/detection", min_confidence="0.5")) == ["dog"]
    assert labels(post(client, "/v1/vision/detection", min_confidence="1")) == []
    assert labels(post(client, "/v1/vision/detection", min_confidence="")) == ["dog", "cat"]  # default
    # The query string is not DeepStack's: it changes nothing.
    assert labels(post(client, "/v1/vision/detection?min_confidence=0.05")) == ["dog", "cat"]
    # Plain ASCII decimal only: other scripts' digits, spaces, signs and exponents are refused
    # (1e-400 would otherwise be read as 0, where DeepStack answers 400).
    for bad in ("abc", "1.5", "-0.1", "nan", "inf", "٠.٥", "０.５", " 0.5", "0.5 ", "1e-400", "+0.5", "5e-1",
                "0.5\n", "0x1", "0" * 33):
        assert "min_confidence" in assert_deepstack_error(
            post(client, "/v1/vision/detection", min_confidence=bad), 400)


def test_highest_confidence_first_integer_corners_and_coco_names(tmp_path):
    app = create_app(Settings(detection_enabled=True, models_dir=tmp_path), detector=UnsortedDetector())
    body = post(app.test_client(), "/v1/vision/detection").get_json()
    assert [(p["label"], p["confidence"]) for p in body["predictions"]] == [
        ("person", 0.97), ("tv", 0.75), ("motorcycle", 0.55)]
    assert all(isinstance(p[k], int) for p in body["predictions"] for k in ("x_min", "y_min", "x_max", "y_max"))
    assert body["predictions"][2]["x_min"] == 10
    assert body["message"] == "Found person, tv, motorcycle" and body["count"] == 3
    # /v2 keeps the model's own labels; the DeepStack routes answer COCO's.
    v2 = post(app.test_client(), "/v2/detect?min_score=0.4").get_json()["results"][0]["detections"]
    assert [COCO_NAMES.get(d["label"], d["label"]) for d in v2] == [p["label"] for p in body["predictions"]]


def test_summary_message_names_the_first_three(tmp_path):
    app = create_app(Settings(detection_enabled=True, models_dir=tmp_path), detector=UnsortedDetector())
    assert post(app.test_client(), "/v1/vision/detection", min_confidence="0.1").get_json()["message"] == \
        "Found person, tv, motorcycle..."


def test_same_boxes_and_labels_as_v2_detect_with_the_fake(tmp_path):
    client = make_app(tmp_path, cache_maxsize=0).test_client()
    image = imaging.jpeg(size=(257, 191), color=(10, 200, 60))
    for threshold in ("0.05", "0.4", "0.95"):
        deepstack = post(client, "/v1/vision/detection", image=image, min_confidence=threshold).get_json()
        v2 = post(client, f"/v2/detect?min_score={threshold}", image=image).get_json()
        expected = [(d["label"], [d["box"][k] for k in ("x1", "y1", "x2", "y2")])
                    for d in v2["results"][0]["detections"]]
        assert [(p["label"], [p[k] for k in ("x_min", "y_min", "x_max", "y_max")])
                for p in deepstack["predictions"]] == expected


def test_custom_model_route_and_list(tmp_path):
    client = create_app(Settings(detection_enabled=True, detection_models=("fake_detector", "unsorted"),
                                 models_dir=tmp_path), detector=FakeDetector()).test_client()
    body = post(client, "/v1/vision/custom/fake_detector").get_json()
    assert set(body) == DETECTION_FIELDS and [p["label"] for p in body["predictions"]] == ["dog", "cat"]
    error = assert_deepstack_error(post(client, "/v1/vision/custom/nope"), 404)
    assert "fake_detector" in error
    listed = client.post("/v1/vision/custom/list")
    assert listed.status_code == 200 and listed.get_json() == {"success": True, "models": ["fake_detector"],
                                                               "code": 200}


def test_scene_is_the_default_classifiers_top_label(client):
    response = post(client, "/v1/vision/scene", api_key="")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"success", "label", "confidence", "code"} | TIMINGS
    top = post(client, "/v2/classify?top_k=1").get_json()["results"][0]["predictions"][0]
    assert body["success"] is True and body["label"] == top["label"] == "blue"
    assert body["confidence"] == pytest.approx(top["score"], abs=1e-4)


# --- errors --------------------------------------------------------------------------------------

def test_bad_inputs_answer_deepstacks_error_shape(client):
    content_type, no_image = multipart(fields={"api_key": ""})
    assert_deepstack_error(client.post("/v1/vision/detection", data=no_image, content_type=content_type), 400)
    assert_deepstack_error(post(client, "/v1/vision/detection", image=b"<html>not an image</html>"), 400)
    assert_deepstack_error(post(client, "/v1/vision/detection", image=b""), 400)
    assert_deepstack_error(post(client, "/v1/vision/detection", image=FRAME[: len(FRAME) // 2]), 400)
    assert_deepstack_error(post(client, "/v1/vision/detection", image=b"8BPS\x00\x01" + b"\x00" * 64), 415)
    assert_deepstack_error(post(client, "/v1/vision/scene", image=imaging.png_header_claiming(20000, 20000)), 413)
    assert_deepstack_error(client.post("/v1/vision/detection", data=FRAME, content_type="image/jpeg"), 415)
    content_type, two = multipart(files=[("image", "a.jpg", FRAME), ("image", "b.jpg", FRAME)])
    assert_deepstack_error(client.post("/v1/vision/detection", data=two, content_type=content_type), 400)
    broken = b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n" + FRAME
    assert client.post("/v1/vision/detection", data=broken,
                       content_type="multipart/form-data; boundary=x").status_code == 400


def test_body_over_the_upload_cap_is_413_in_deepstacks_shape(tmp_path):
    client = make_app(tmp_path, max_upload_mb=1).test_client()
    assert "1 MB" in assert_deepstack_error(post(client, "/v1/vision/detection", image=FRAME + b"\0" * (2 << 20)), 413)


def test_disabled_features_answer_403(tmp_path):
    detect_only = create_app(Settings(detection_enabled=True, models_dir=tmp_path), detector=FakeDetector())
    assert "IMAGE_CLASSIFICATION_ENABLED" in assert_deepstack_error(post(detect_only.test_client(), "/v1/vision/scene"), 403)
    classify_only = create_app(Settings(classification_enabled=True, models_dir=tmp_path), classifier=FakeClassifier())
    client = classify_only.test_client()
    for path in ("/v1/vision/detection", "/v1/vision/custom/yolo"):
        assert "OBJECT_DETECTION_ENABLED" in assert_deepstack_error(post(client, path), 403)
    assert_deepstack_error(client.post("/v1/vision/custom/list"), 403)


def test_model_failure_is_500_and_the_next_request_is_served(tmp_path, caplog):
    failing = create_app(Settings(detection_enabled=True, models_dir=tmp_path),
                         detector=FakeDetector(fail_predict=True)).test_client()
    assert_deepstack_error(post(failing, "/v1/vision/detection"), 500)
    assert "detector exploded" not in failing.get("/report").get_data(as_text=True)
    working = make_app(tmp_path).test_client()
    assert post(working, "/v1/vision/detection").status_code == 200


def test_draining_answers_503_with_retry_after(app, client):
    app.extensions["admission"].draining.set()
    response = post(client, "/v1/vision/detection")
    assert_deepstack_error(response, 503)
    assert response.headers["Retry-After"] == "1"


# --- API keys ------------------------------------------------------------------------------------

def test_api_key_form_field_on_the_deepstack_routes_only(tmp_path):
    client = make_app(tmp_path, api_keys=("frigate-key",)).test_client()
    assert post(client, "/v1/vision/detection", api_key="frigate-key").status_code == 200
    assert post(client, "/v1/vision/scene", api_key="frigate-key").status_code == 200
    for key in ("", "wrong"):
        assert "api_key" in assert_deepstack_error(post(client, "/v1/vision/detection", api_key=key), 401)
    assert_deepstack_error(post(client, "/v1/vision/detection"), 401)
    content_type, body = multipart(fields={"api_key": "frigate-key"}, files={"image": ("f.jpg", FRAME)})
    assert client.post("/v1/vision/detection", data=body, content_type=content_type,
                       headers={"X-API-Key": "frigate-key"}).status_code == 200
    # Other routes never read the body for a key.
    assert post(client, "/v2/detect", api_key="frigate-key").status_code == 401
    # Only a multipart body carries it, as DeepStack's clients send it: not a urlencoded one.
    for path in ("/v1/vision/detection", "/v1/vision/custom/list"):
        assert_deepstack_error(client.post(path, data={"api_key": "frigate-key"},
                                           content_type="application/x-www-form-urlencoded"), 401)
        assert_deepstack_error(client.post(path + "?api_key=frigate-key"), 401)
    content_type, body = multipart(fields={"api_key": "frigate-key"})
    assert client.post("/v1/vision/custom/list", data=body, content_type=content_type).status_code == 200


def test_an_empty_api_key_is_accepted_when_no_keys_are_set(client):
    assert post(client, "/v1/vision/detection", api_key="").status_code == 200


# --- operations: metrics, report, documentation ----------------------------------------------

def test_counted_in_metrics_and_report_by_url_rule(client):
    post(client, "/v1/vision/detection")
    post(client, "/v1/vision/custom/fake_detector", image=imaging.png(size=(20, 20)))
    post(client, "/v1/vision/custom/nope")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{method="POST",route="/v1/vision/detection",status="200"} 1.0' in metrics
    assert 'http_requests_total{method="POST",route="/v1/vision/custom/<model>",status="200"} 1.0' in metrics
    assert 'http_requests_total{method="POST",route="/v1/vision/custom/<model>",status="404"} 1.0' in metrics
    routes = client.get("/report").get_json()["routes"]
    assert routes["/v1/vision/detection"]["num_requested"] == 1
    assert routes["/v1/vision/custom/<model>"]["num_requested"] == 1


def test_documented_in_openapi(client):
    document = client.get("/openapi.json").get_json()
    for path in ("/v1/vision/detection", "/v1/vision/custom/{model}", "/v1/vision/custom/list", "/v1/vision/scene"):
        assert "post" in document["paths"][path]
    form = document["paths"]["/v1/vision/detection"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["min_confidence"]["default"] == DEFAULT_MIN_CONFIDENCE
    assert {"image", "api_key"} <= set(form["schema"]["properties"])


# --- the real server, driven as Frigate drives it ----------------------------------------------

DEFAULT_DETECTOR, CUSTOM_DETECTOR = "yolov8n_int8", "yolov5n_onnx"


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """`python app.py` under waitress with two real small detectors from ../shared as model
    folders (YOLOv8n TFLite the default, YOLOv5n ONNX by name), cache off so every request runs
    the model."""
    models_dir = tmp_path_factory.mktemp("models")
    for name in (DEFAULT_DETECTOR, CUSTOM_DETECTOR):
        build_folder(models_dir, name)
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    process, url = start_server({"OBJECT_DETECTION_ENABLED": "true",
                                 "OBJECT_DETECTION_MODEL": f"{DEFAULT_DETECTOR},{CUSTOM_DETECTOR}",
                                 "MODELS_DIR": str(models_dir), "MODEL_DOWNLOAD": "false",
                                 "PRELOAD_MODELS": "true", "CACHE_MAXSIZE": "0"}, log_path)
    try:
        wait_until(lambda: requests.get(url + "/ready", timeout=2).status_code == 200, 300, "readiness")
        yield url
    finally:
        stop_server(process, log_path, timeout=30)


def camera_frame(relative: str, size: int = 320) -> np.ndarray:
    """Frigate's detector input: a size x size RGB uint8 tensor with a batch axis (the photo squeezed)."""
    image = Image.open(photo(relative)).convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)[np.newaxis]


def jpeg_bytes(relative: str, size: int = 320) -> bytes:
    with io.BytesIO() as output:
        Image.fromarray(camera_frame(relative, size)[0]).save(output, format="JPEG")
        return output.getvalue()


# Each frame's objects that YOLOv8n finds at 0.4 or more in the 320x320 frame (COCO names).
FRIGATE_FRAMES = {"ultralytics/bus.jpg": {"person", "bus"}, "darknet/dog.jpg": {"dog", "bicycle", "car"},
                  "darknet/person.jpg": {"person", "horse", "dog"}}


@pytest.mark.slow
def test_frigate_gets_detections_from_the_real_server(real_server):
    """Frigate's own request and parsing against YOLOv8n: every frame gives detections, with
    Frigate's label indices, in 0-1 coordinates. The timeout is generous here (a loaded test
    machine); Frigate's default 0.1 s is the benchmark's target (`python -m bench.deepstack`)."""
    frigate = FrigateDeepStack(real_server + "/v1/vision/detection", api_timeout=30)
    labels = frigate_labelmap()
    for relative, expected in FRIGATE_FRAMES.items():
        rows = frigate.detect_raw(camera_frame(relative))
        assert frigate.errors == []
        found = rows[rows[:, 1] > 0]
        assert len(found) > 0, relative
        assert expected <= {labels[int(index)] for index in found[:, 0]}, (relative, found)
        assert np.all(found[:, 1] >= 0.4) and np.all(np.diff(found[:, 1]) <= 0)  # highest first
        assert np.all((found[:, 2:] >= 0) & (found[:, 2:] <= 1))
        assert np.all(found[:, 2] <= found[:, 4]) and np.all(found[:, 3] <= found[:, 5])


@pytest.mark.slow
def test_the_answer_frigate_parses_has_deepstacks_shape(real_server):
    with requests.Session() as session:
        response = session.post(real_server + "/v1/vision/detection", data={"api_key": ""},
                                files={"image": jpeg_bytes("darknet/dog.jpg")}, timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    answer = response.json()
    assert set(answer) == DETECTION_FIELDS and answer["success"] is True and answer["code"] == 200
    predictions = answer["predictions"]
    assert answer["count"] == len(predictions) > 0
    assert answer["inferenceMs"] > 0
    for p in predictions:
        assert set(p) == {"label", "confidence", "x_min", "y_min", "x_max", "y_max"}
        assert all(isinstance(p[k], int) for k in ("x_min", "y_min", "x_max", "y_max"))
        assert 0 <= p["x_min"] <= p["x_max"] <= 320 and 0 <= p["y_min"] <= p["y_max"] <= 320
        assert p["confidence"] >= DEFAULT_MIN_CONFIDENCE


def same_as_v2(url: str, image: bytes, model: str, threshold: str, path: str) -> tuple[list, list]:
    deepstack = requests.post(url + path, files={"image": image}, data={"min_confidence": threshold},
                              timeout=60).json()
    v2 = requests.post(url + f"/v2/detect?model={model}&min_score={threshold}", files={"image": image},
                       timeout=60).json()
    got = [(p["label"], p["confidence"], [p[k] for k in ("x_min", "y_min", "x_max", "y_max")])
           for p in deepstack["predictions"]]
    expected = [(d["label"], d["score"], [d["box"][k] for k in ("x1", "y1", "x2", "y2")])
                for d in v2["results"][0]["detections"]]
    return got, expected


@pytest.mark.slow
@pytest.mark.parametrize("model, path", [(DEFAULT_DETECTOR, "/v1/vision/detection"),
                                         (CUSTOM_DETECTOR, f"/v1/vision/custom/{CUSTOM_DETECTOR}")])
def test_same_boxes_and_labels_as_v2_detect(real_server, model, path):
    """Same image, model and threshold: the same labels and integer boxes, in the same order
    (the full-size photo, so boxes are in its own pixels)."""
    image = photo("ultralytics/bus.jpg").read_bytes()
    for threshold in ("0.25", "0.4", "0.7"):
        got, expected = same_as_v2(real_server, image, model, threshold, path)
        assert [(label, box) for label, _, box in got] == [(label, box) for label, _, box in expected]
        assert [score for _, score, _ in got] == pytest.approx([score for _, score, _ in expected], abs=1e-4)
        assert all(isinstance(v, int) for _, _, box in got for v in box)
        if threshold == "0.25":
            assert len(got) >= 3, got  # a real answer, not two empty lists


@pytest.mark.slow
def test_real_server_lists_its_detectors(real_server):
    listed = requests.post(real_server + "/v1/vision/custom/list", data={"api_key": ""}, timeout=10).json()
    assert listed == {"success": True, "models": [DEFAULT_DETECTOR, CUSTOM_DETECTOR], "code": 200}
    unknown = requests.post(real_server + "/v1/vision/custom/nope", files={"image": jpeg_bytes("darknet/dog.jpg")},
                            timeout=10)
    assert unknown.status_code == 404 and unknown.json()["success"] is False


@pytest.mark.slow
def test_bad_files_get_deepstack_errors_and_the_server_stays_healthy(real_server):
    url = real_server + "/v1/vision/detection"
    bad_files = {b"not a jpeg": 400, jpeg_bytes("darknet/dog.jpg")[:2000]: 400, b"": 400,
                 imaging.png_header_claiming(20000, 20000): 413}
    with requests.Session() as session:
        for data, status in bad_files.items():
            response = session.post(url, data={"api_key": ""}, files={"image": data}, timeout=30)
            assert response.status_code == status, response.text
            answer = response.json()
            assert answer == {"success": False, "error": answer["error"], "code": status}
            assert answer.get("predictions") is None  # Frigate: no detections, no exception
    assert requests.get(real_server + "/health", timeout=5).status_code == 200
    assert requests.get(real_server + "/ready", timeout=5).status_code == 200
    frigate = FrigateDeepStack(url, api_timeout=30)
    assert np.count_nonzero(frigate.detect_raw(camera_frame("darknet/dog.jpg"))[:, 1]) > 0
