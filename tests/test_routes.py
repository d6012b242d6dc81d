"""The HTTP layer with instant fake models: shapes, status codes, the error contract."""
from __future__ import annotations

import io
import re
import threading

import pytest

from app import create_app
from config import Settings
from errors import ECHO_CHARS, echo
from tests.support import imaging
from tests.support.fakes import FakeClassifier, FakeDetector
from tests.support.http import assert_error, multipart, upload


def test_classify_returns_label_percentage_pairs_highest_first(client):
    response = upload(client, "/classify-image", imaging.jpeg(color=(250, 10, 10)))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.get_json()
    assert [row[0] for row in body][0] == "red"
    assert all(isinstance(label, str) and 0 <= pct <= 100 for label, pct in body)
    assert [pct for _, pct in body] == sorted((pct for _, pct in body), reverse=True)
    assert sum(pct for _, pct in body) == pytest.approx(100, abs=0.1)


def test_classify_top_k(client):
    assert len(upload(client, "/classify-image", imaging.jpeg(), query="?top_k=1").get_json()) == 1
    # More than the model has labels: all of them.
    assert len(upload(client, "/classify-image", imaging.jpeg(), query="?top_k=1000").get_json()) == 3
    for bad in ("0", "1001", "abc", "2.5"):
        assert_error(upload(client, "/classify-image", imaging.jpeg(), query=f"?top_k={bad}"),
                     400, "invalid_parameter")


def test_detect_returns_imageai_shape(client):
    response = upload(client, "/detect-objects", imaging.jpeg(size=(100, 80)))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json() == [
        {"name": "dog", "percentage_probability": 90.0, "box_points": [0, 0, 50, 40]},
        {"name": "cat", "percentage_probability": 40.0, "box_points": [50, 40, 100, 80]},
    ]


def test_detect_min_probability(client):
    body = upload(client, "/detect-objects", imaging.jpeg(), query="?min_probability=5").get_json()
    assert len(body) == 3
    body = upload(client, "/detect-objects", imaging.jpeg(), query="?min_probability=50").get_json()
    assert [d["name"] for d in body] == ["dog"]
    for bad in ("-1", "101", "nan", "x"):
        assert_error(upload(client, "/detect-objects", imaging.jpeg(), query=f"?min_probability={bad}"), 400)


@pytest.mark.parametrize("path, field", [("/classify-image", "top_k"), ("/v2/classify", "top_k"),
                                         ("/v2/classify", "min_score"), ("/detect-objects", "min_probability"),
                                         ("/v2/detect", "min_score"), ("/v2/detect", "max_detections")])
@pytest.mark.parametrize("spelling", ["٠.٥", "０.５", " 1", "1 ", "1e-400", "+1", "1e0", "1_0", "١", "0x1",
                                      "1" * 40])
def test_numeric_parameters_take_plain_ascii_decimal_only(client, path, field, spelling):
    response = client.post(path, query_string={field: spelling},
                           data={"image": (io.BytesIO(imaging.jpeg()), "a.jpg")}, content_type="multipart/form-data")
    body = assert_error(response, 400, "invalid_parameter")
    assert f"'{field}'" in body["error"]["message"]


def test_a_huge_model_name_is_quoted_short(client):
    """Error messages quote a client's text cut to ECHO_CHARS characters: a 20 kB model name is
    not sent back whole, on any route that names a model."""
    name = "a" * 20_000
    answers = [client.post("/v2/detect", query_string={"model": name},
                           data={"image": (io.BytesIO(imaging.jpeg()), "a.jpg")}, content_type="multipart/form-data"),
               client.get(f"/models/{name}"), client.get(f"/models/{name}/labels"),
               client.post(f"/v1/vision/custom/{name}", data={"image": (io.BytesIO(imaging.jpeg()), "a.jpg")},
                           content_type="multipart/form-data")]
    for response in answers:
        assert response.status_code == 404 and len(response.data) < 1000, response.request.path[:30]
        body = response.get_json()
        message = body["error"]["message"] if "message" in body.get("error", {}) else body["error"]
        assert "a" * ECHO_CHARS + "…" in message and "a" * (ECHO_CHARS + 1) not in message


def test_echo_cuts_and_keeps_messages_on_one_line():
    assert echo("short") == "short"
    assert echo("x" * 65) == "x" * 64 + "…" and echo("x" * 64) == "x" * 64
    assert echo("bad\r\nX-Injected: 1\x00") == "bad??X-Injected: 1?"


def test_disabled_features_answer_403(tmp_path):
    app = create_app(Settings(models_dir=tmp_path))
    client = app.test_client()
    body = assert_error(upload(client, "/classify-image", imaging.jpeg()), 403, "feature_disabled")
    assert "IMAGE_CLASSIFICATION_ENABLED" in body["error"]["message"]
    body = assert_error(upload(client, "/detect-objects", imaging.jpeg()), 403, "feature_disabled")
    assert "OBJECT_DETECTION_ENABLED" in body["error"]["message"]
    assert client.get("/ready").status_code == 200  # nothing to load
    status = client.get("/status").get_json()
    assert status["features"]["classification"]["enabled"] is False
    assert status["worker"] == {"index": 0, "count": 1}  # one process (WORKERS unset)


def test_health_ready_status(client, classifier):
    assert client.get("/health").get_json() == {"status": "ok"}
    response = client.get("/ready")
    assert_error(response, 503, "not_ready")
    assert response.get_json()["models"]["fake_classifier"]["state"] == "not_loaded"
    upload(client, "/classify-image", imaging.jpeg())
    upload(client, "/detect-objects", imaging.jpeg())
    response = client.get("/ready")
    assert response.status_code == 200
    assert {m["state"] for m in response.get_json()["models"].values()} == {"ready"}
    status = client.get("/status").get_json()
    assert status["features"]["classification"]["model"] == "fake_classifier"
    assert status["models"]["fake_detector"]["state"] == "ready"
    assert status["models"]["fake_classifier"]["memory_mb"] >= 0


def test_model_loads_once_when_requests_arrive_together(settings):
    classifier = FakeClassifier(load_delay=0.3)
    app = create_app(settings, classifier=classifier, detector=FakeDetector())
    results = []

    def call():
        results.append(upload(app.test_client(), "/classify-image", imaging.jpeg()).status_code)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6
    assert classifier.load_calls == 1


def test_failed_load_is_reported_not_retried_per_request(settings):
    classifier = FakeClassifier(fail_load=True)
    client = create_app(settings, classifier=classifier, detector=FakeDetector()).test_client()
    for _ in range(3):
        assert_error(upload(client, "/classify-image", imaging.jpeg()), 503, "model_not_ready")
    assert classifier.load_calls == 1
    ready = client.get("/ready").get_json()
    assert ready["models"]["fake_classifier"]["state"] == "failed"
    assert "OSError" in ready["models"]["fake_classifier"]["reason"]
    assert "/secret" not in str(ready)
    # The healthy feature and liveness are unaffected.
    assert client.get("/health").status_code == 200
    assert upload(client, "/detect-objects", imaging.jpeg()).status_code == 200


def test_inference_failure_is_500_and_next_request_succeeds(settings):
    classifier = FakeClassifier(fail_predict=True)
    client = create_app(settings, classifier=classifier, detector=FakeDetector()).test_client()
    assert_error(upload(client, "/classify-image", imaging.jpeg()), 500, "inference_failed")
    classifier.fail_predict = False
    assert upload(client, "/classify-image", imaging.jpeg()).status_code == 200


# --- bad input (RELIABILITY.md, "Bad input") -----------------------------------------------

def test_missing_image_field(client):
    assert_error(client.post("/classify-image", data={}, content_type="multipart/form-data"), 400, "missing_image")
    assert_error(client.post("/classify-image", data={"other": (io.BytesIO(imaging.jpeg()), "a.jpg")},
                             content_type="multipart/form-data"), 400, "missing_image")
    # The field sent as text instead of a file.
    assert_error(client.post("/classify-image", data={"image": "abc"}, content_type="multipart/form-data"),
                 400, "missing_image")


def test_empty_file(client):
    assert_error(upload(client, "/classify-image", b""), 400, "invalid_image")


@pytest.mark.parametrize("data", [
    b"hello, this is text",
    b"<!doctype html><html><body>not an image</body></html>",
    b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF",
    b"\x00" * 1000,
])
def test_non_images_sent_as_jpeg_are_400(client, data):
    assert_error(upload(client, "/classify-image", data, content_type="image/jpeg"), 400, "invalid_image")
    assert_error(upload(client, "/detect-objects", data), 400, "invalid_image")


def test_wrong_content_type(client):
    assert_error(client.post("/classify-image", data=imaging.jpeg(), content_type="image/jpeg"),
                 415, "unsupported_media_type")
    assert_error(client.post("/classify-image", data="hello", content_type="text/plain"), 415)
    # JSON is a way to send an image (image_url / image_base64), so an empty object is a 400.
    assert_error(client.post("/classify-image", data="{}", content_type="application/json"), 400, "missing_image")
    assert_error(client.post("/classify-image", data="{not json", content_type="application/json"), 400)


def test_broken_multipart_boundary(client):
    body = b"--wrong\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n" + imaging.jpeg()
    response = client.post("/classify-image", data=body,
                           content_type="multipart/form-data; boundary=expected")
    assert_error(response, 400)


def test_body_over_limit_is_413_json(tmp_path):
    settings = Settings(classification_enabled=True, models_dir=tmp_path, max_upload_mb=1)
    client = create_app(settings, classifier=FakeClassifier()).test_client()
    content_type, data = multipart(files={"image": ("a.jpg", imaging.jpeg() + b"\0" * (1024 * 1024))})
    body = assert_error(client.post("/classify-image", data=data, content_type=content_type),
                        413, "request_too_large")
    assert "1 MB" in body["error"]["message"]


def test_thousands_of_form_parts_are_413(client):
    content_type, data = multipart({f"field{i}": "x" for i in range(2000)},
                                           {"image": ("a.jpg", imaging.jpeg())})
    assert_error(client.post("/classify-image", data=data, content_type=content_type), 413)


def test_huge_text_field_is_413(client):
    content_type, data = multipart({"note": "x" * 2_000_000}, {"image": ("a.jpg", imaging.jpeg())})
    assert_error(client.post("/classify-image", data=data, content_type=content_type), 413)


@pytest.mark.parametrize("filename", ["../../etc/passwd.jpg", "a\x00b.jpg", "x" * 10_000 + ".jpg", ""])
def test_hostile_filenames_are_ignored(client, filename):
    response = upload(client, "/classify-image", imaging.jpeg(), filename=filename)
    assert response.status_code == 200
    assert "passwd" not in response.get_data(as_text=True)


def test_unknown_path_and_wrong_method_are_json(client):
    assert_error(client.get("/nope"), 404, "not_found")
    response = client.get("/classify-image")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    assert_error(client.post("/health"), 405)


def test_pixel_bomb_is_413(client):
    assert_error(upload(client, "/classify-image", imaging.png_header_claiming(20000, 20000), filename="a.png"),
                 413, "image_too_large")


def test_every_error_message_is_plain(client):
    for response in (client.get("/nope"), upload(client, "/classify-image", b"junk")):
        message = response.get_json()["error"]["message"]
        assert not re.search(r"<|>|Traceback|File \"", message)


def test_the_model_sees_the_upright_image(client, classifier):
    from PIL import Image
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6
    upload(client, "/classify-image", imaging.encode(stored, "JPEG", exif=exif))
    assert classifier.seen_sizes[-1] == (20, 40)
