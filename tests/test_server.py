"""The real server: `python app.py` under waitress, as deployed, driven over HTTP."""
from __future__ import annotations

import time

import pytest
import requests

from tests.support import imaging
from tests.support.http import multipart
from tests.support.servers import start_server, stop_server, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(random_models_dir, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    process, url = start_server({
        "IMAGE_CLASSIFICATION_ENABLED": "true", "OBJECT_DETECTION_ENABLED": "yes",
        "MODELS_DIR": str(random_models_dir), "MODEL_DOWNLOAD": "false", "PRELOAD_MODELS": "true",
        "MAX_UPLOAD_MB": "2", "INFERENCE_CONCURRENCY": "4",
    }, log_path)
    process.log_path = log_path
    try:
        wait_until(lambda: requests.get(url + "/health", timeout=1).status_code == 200, 60, "liveness")
        yield process, url
    finally:
        stop_server(process, log_path, timeout=20)


def post(url, data, filename="photo.jpg", **kwargs):
    return requests.post(url, files={"image": (filename, data, "image/jpeg")}, timeout=120, **kwargs)


def test_liveness_first_then_readiness_after_preload(server):
    process, url = server
    # Liveness answers at once, whatever the models are doing.
    started = time.perf_counter()
    assert requests.get(url + "/health", timeout=5).json() == {"status": "ok"}
    assert time.perf_counter() - started < 1.0
    wait_until(lambda: requests.get(url + "/ready", timeout=5).status_code == 200, 300, "readiness")
    models = requests.get(url + "/ready", timeout=5).json()["models"]
    assert {m["state"] for m in models.values()} == {"ready"} and set(models) == {"mobilenet", "yolo"}
    status = requests.get(url + "/status", timeout=5).json()
    assert status["features"]["classification"]["model"] == "mobilenet"
    assert status["features"]["detection"]["model"] == "yolo"


def test_classify_and_detect_over_http(server):
    _, url = server
    wait_until(lambda: requests.get(url + "/ready", timeout=5).status_code == 200, 300, "readiness")
    response = post(url + "/classify-image?top_k=3", imaging.jpeg(size=(300, 200)))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert len(body) == 3 and all(isinstance(label, str) and 0 <= p <= 100 for label, p in body)

    response = post(url + "/detect-objects", imaging.png(size=(160, 120)), filename="x.png")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    for d in response.json():
        assert set(d) == {"name", "percentage_probability", "box_points"}


def test_errors_are_json_and_the_server_keeps_serving(server):
    process, url = server
    cases = [
        (post(url + "/classify-image", b"<html>not an image</html>"), 400),
        (requests.post(url + "/classify-image", data=b"raw", headers={"Content-Type": "image/jpeg"}, timeout=10), 415),
        (post(url + "/classify-image", b"8BPS\x00\x01" + b"\x00" * 64), 415),
        (post(url + "/classify-image", imaging.png_header_claiming(20000, 20000)), 413),
        (post(url + "/classify-image", imaging.jpeg() + b"\0" * (3 * 1024 * 1024)), 413),
        (requests.get(url + "/missing", timeout=10), 404),
        (requests.get(url + "/detect-objects", timeout=10), 405),
    ]
    for response, code in cases:
        assert response.status_code == code, response.text
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == code
    assert process.poll() is None
    assert post(url + "/classify-image", imaging.jpeg()).status_code == 200


def test_chunked_body_over_the_limit_is_413_json(server):
    _, url = server
    content_type, body = multipart(files={"image": ("a.jpg", imaging.jpeg() + b"\0" * (3 * 1024 * 1024))})

    def chunks():
        for i in range(0, len(body), 64 * 1024):
            yield body[i:i + 64 * 1024]

    response = requests.post(url + "/classify-image", data=chunks(), headers={"Content-Type": content_type}, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert requests.get(url + "/health", timeout=5).status_code == 200


def test_invalid_configuration_stops_the_process_with_every_problem(tmp_path):
    started = time.monotonic()
    process, _ = start_server({"IMAGE_CLASSIFICATION_MODEL": "vgg", "OBJECT_DETECTION_ENABLED": "maybe",
                               "INFERENCE_CONCURRENCY": "four"}, tmp_path / "server.log")
    process.wait(timeout=30)
    assert time.monotonic() - started < 10
    output = (tmp_path / "server.log").read_text()
    assert process.returncode != 0
    assert "IMAGE_CLASSIFICATION_MODEL" in output and "mobilenet, resnet, inception, densenet" in output
    assert "OBJECT_DETECTION_ENABLED" in output and "INFERENCE_CONCURRENCY" in output
    assert "Traceback" not in output


def test_v2_docs_metrics_and_the_json_access_log(server):
    process, url = server
    wait_until(lambda: requests.get(url + "/ready", timeout=5).status_code == 200, 300, "readiness")
    import base64
    body = {"images": [{"image_base64": base64.b64encode(imaging.jpeg(size=(64, 64))).decode()},
                       {"image_base64": "!!"}]}
    response = requests.post(url + "/v2/classify?top_k=2", json=body, headers={"X-Request-ID": "server-test-1"},
                             timeout=120)
    assert response.status_code == 200 and response.headers["X-Request-ID"] == "server-test-1"
    results = response.json()["results"]
    assert len(results[0]["predictions"]) == 2 and results[1]["error"]["code"] == 400
    assert requests.get(url + "/openapi.json", timeout=10).json()["openapi"].startswith("3.")
    assert requests.get(url + "/docs", timeout=10).status_code == 200
    assert "http_requests_total" in requests.get(url + "/metrics", timeout=10).text
    import json
    lines = [json.loads(line) for line in process.log_path.read_text().splitlines() if "server-test-1" in line]
    assert lines and lines[0]["route"] == "/v2/classify" and lines[0]["status"] == 200
    assert lines[0]["model"] == "mobilenet" and lines[0]["images"] == 2
