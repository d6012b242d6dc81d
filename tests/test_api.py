"""The richer API: /v2 routes, batches, annotation, cache, report, OpenAPI, docs, metrics,
API keys and the request log. Fake models keep these fast; the real models are elsewhere."""
from __future__ import annotations

import io
import json
import logging
import re

import numpy as np
import pytest
import requests
from PIL import Image

import errors
from api.annotate import MAX_DRAWN_BOXES, MAX_DRAWN_PIXELS, drawn_size
from api.middleware import API_POLICY, SECURITY_HEADERS
from app import create_app
from config import Settings
from contract import Detection
from dataplane.cache import ResultCache
from dataplane.report import MAX_IMAGES, UsageReport
from tests.support import imaging
from tests.support.fakes import FakeClassifier, FakeDetector
from tests.support.http import b64, call, every_route, make_app, multipart, post_images
from tests.support.image_server import ImageServer
from tests.support.slow_server import SlowServer

RED = imaging.jpeg(size=(40, 30), color=(250, 10, 10))
BLUE = imaging.png(size=(20, 10), color=(10, 10, 250))




# --- /v2 shapes -------------------------------------------------------------------------------

def test_v2_classify_shape(client):
    body = post_images(client, "/v2/classify?top_k=2", RED).get_json()
    assert body["model"] == "fake_classifier" and body["cached"] is False
    (result,) = body["results"]
    assert (result["width"], result["height"]) == (40, 30)
    assert [p["label"] for p in result["predictions"]][0] == "red" and len(result["predictions"]) == 2
    assert result["predictions"][0]["class_id"] == 0 and 0 <= result["predictions"][0]["score"] <= 1


def test_v2_classify_min_score(client):
    preds = post_images(client, "/v2/classify?top_k=3&min_score=0.5", RED).get_json()["results"][0]["predictions"]
    assert [p["label"] for p in preds] == ["red"]


def test_v2_detect_shape_and_filters(client):
    body = post_images(client, "/v2/detect?min_score=0.05", RED).get_json()
    dets = body["results"][0]["detections"]
    assert dets[0] == {"label": "dog", "score": 0.9, "box": {"x1": 0, "y1": 0, "x2": 20, "y2": 15}}
    assert len(dets) == 3
    only_cats = post_images(client, "/v2/detect?min_score=0.05&classes=Cat", RED).get_json()
    assert {d["label"] for d in only_cats["results"][0]["detections"]} == {"cat"}
    top1 = post_images(client, "/v2/detect?min_score=0.05&max_detections=1", RED).get_json()
    assert len(top1["results"][0]["detections"]) == 1
    for bad in ("min_score=2", "max_detections=0", "annotate=maybe"):
        assert post_images(client, f"/v2/detect?{bad}", RED).status_code == 400


def test_json_base64_input_on_every_route(client):
    for path in ("/classify-image", "/detect-objects", "/v2/classify", "/v2/detect"):
        response = client.post(path, json={"image_base64": b64(RED)})
        assert response.status_code == 200, (path, response.get_json())
    data_uri = "data:image/jpeg;base64," + b64(RED)
    assert client.post("/v2/classify", json={"image_base64": data_uri}).status_code == 200
    bad = client.post("/classify-image", json={"image_base64": "not base64!!"})
    assert bad.status_code == 400 and bad.get_json()["error"]["type"] == "invalid_image"
    both = client.post("/classify-image", json={"image_base64": b64(RED), "image_url": "http://x/a.jpg"})
    assert both.status_code == 400


# --- batches ----------------------------------------------------------------------------------

def test_batch_of_parts_keeps_order_and_isolates_bad_images(client, app):
    response = post_images(client, "/v2/classify?top_k=1", RED, b"not an image", BLUE)
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert results[0]["predictions"][0]["label"] == "red"
    assert results[1]["error"]["code"] == 400 and results[1]["error"]["type"] == "invalid_image"
    assert results[2]["predictions"][0]["label"] == "blue"


def test_batch_runs_as_one_model_call(tmp_path):
    classifier = FakeClassifier()
    calls = []
    original = classifier.predict
    classifier.predict = lambda images: calls.append(len(images)) or original(images)
    app = create_app(Settings(classification_enabled=True, models_dir=tmp_path), classifier=classifier)
    post_images(app.test_client(), "/v2/classify", RED, BLUE, imaging.jpeg(color=(0, 255, 0)))
    assert calls == [3]


def test_json_batch_with_urls_and_base64(tmp_path):
    with ImageServer() as server:
        app = make_app(tmp_path, fetch_allow_hosts=frozenset({f"127.0.0.1:{server.port}"}))
        body = {"images": [{"image_url": server.url("/cat.jpg")}, {"image_base64": b64(BLUE)},
                           {"image_url": "http://10.0.0.1/x.jpg"}, {"nothing": 1}]}
        results = app.test_client().post("/v2/classify?top_k=1", json=body).get_json()["results"]
    assert results[0]["predictions"][0]["label"] == "green"
    assert results[1]["predictions"][0]["label"] == "blue"
    assert results[2]["error"]["type"] == "image_url_unavailable"
    assert results[3]["error"]["code"] == 400


def test_batch_limits(tmp_path):
    client = make_app(tmp_path, max_request_images=2).test_client()
    response = post_images(client, "/v2/classify", RED, RED, RED)
    assert response.status_code == 400 and "MAX_IMAGES_PER_REQUEST" in response.get_json()["error"]["message"]
    assert client.post("/v2/detect", json={"images": [{"image_base64": b64(RED)}] * 3}).status_code == 400
    assert client.post("/v2/detect", json={"images": []}).status_code == 400
    # v1 routes take one image.
    assert post_images(client, "/classify-image", RED, RED).status_code == 400


def test_a_single_bad_image_on_v2_is_its_error_status(client):
    response = post_images(client, "/v2/classify", imaging.png_header_claiming(20000, 20000))
    assert response.status_code == 413


# --- annotation -------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(40, 30), (3000, 2000)])
def test_annotated_image(client, size):
    response = post_images(client, "/v2/detect?annotate=true&min_score=0.3", imaging.jpeg(size=size, color=(255, 255, 255)))
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.headers["X-Detections"] == response.headers["X-Detections-Drawn"] == "2"
    drawn = Image.open(io.BytesIO(response.data))
    # Up to MAX_DRAWN_PIXELS the image keeps its size; a larger one is drawn scaled down, aspect kept.
    assert drawn.size == drawn_size(size) and drawn.width * drawn.height <= MAX_DRAWN_PIXELS
    assert response.headers["X-Annotated-Size"] == f"{drawn.width}x{drawn.height}"
    assert abs(drawn.width / drawn.height - size[0] / size[1]) < 0.01
    # Something was drawn on the white image, near the dog's box corner.
    assert drawn.convert("RGB").getpixel((1, 1)) != (255, 255, 255)
    assert post_images(client, "/v2/detect?annotate=true", RED, RED).status_code == 400


class CrowdDetector(FakeDetector):
    """One low score listed first, in a corner of its own, then MAX_DRAWN_BOXES high scores
    on top of each other elsewhere."""

    def _detect(self, image, min_score):
        low = Detection("cat", 0.1, (700, 500, 790, 590))
        return [low] + [Detection("dog", 0.9, (10, 10, 100, 100))] * MAX_DRAWN_BOXES


def test_annotation_draws_at_most_the_highest_scores(tmp_path):
    """X-Detections stays the count found; X-Detections-Drawn says how many were drawn."""
    app = create_app(Settings(detection_enabled=True, models_dir=tmp_path), detector=CrowdDetector())
    response = post_images(app.test_client(), "/v2/detect?annotate=true&min_score=0",
                           imaging.jpeg(size=(800, 600), color=(255, 255, 255)))
    assert response.status_code == 200
    assert response.headers["X-Detections"] == str(MAX_DRAWN_BOXES + 1)
    assert response.headers["X-Detections-Drawn"] == str(MAX_DRAWN_BOXES)
    drawn = Image.open(io.BytesIO(response.data))
    assert drawn.getpixel((700, 560)) == pytest.approx((255, 255, 255), abs=8)   # the low score: not drawn
    assert drawn.getpixel((10, 50)) != pytest.approx((255, 255, 255), abs=8)


def big_jpeg(size=(10_000, 4_000)) -> bytes:
    """A JPEG at the side cap with smooth content (compresses to about 1 MB)."""
    gradient = Image.linear_gradient("L").resize(size)
    image = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient.rotate(180)))
    return imaging.encode(image, "JPEG", quality=90)


def peak_and_resident_mb(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmHWM"].split()[0]) // 1024, int(fields["VmRSS"].split()[0]) // 1024


@pytest.mark.slow
def test_annotating_a_huge_image_costs_little_more_than_detecting_it(tmp_path):
    """Against the real server path (waitress): the process' peak memory while annotating a
    10000x4000 JPEG stays well under one full-size copy of the image (160 MB in Pillow's RGB)
    above what a plain /v2/detect of the same image reaches, and the answer is small."""
    data = big_jpeg()
    server = SlowServer(tmp_path, OBJECT_DETECTION_ENABLED="true", FAKE_DELAY_S="0", FAKE_BOXES="1000",
                        CACHE_MAXSIZE="0")
    try:
        for _ in range(2):   # the decoding path's own peak, twice: allocator pools are warm
            plain = requests.post(server.url + "/v2/detect?min_score=0", files={"image": ("a.jpg", data)}, timeout=120)
            assert plain.status_code == 200
        detect_peak, _ = peak_and_resident_mb(server.process.pid)
        response = requests.post(server.url + "/v2/detect?annotate=true&min_score=0",
                                 files={"image": ("a.jpg", data)}, timeout=120)
        annotate_peak, resident = peak_and_resident_mb(server.process.pid)
    finally:
        server.stop()
    print(f"peak MB: plain detect {detect_peak}, annotate {annotate_peak}; resident after {resident} MB; "
          f"answer {len(response.content)} bytes")   # pytest -s shows the measurement
    assert response.status_code == 200 and response.headers["X-Detections"] == "1000"
    assert response.headers["X-Detections-Drawn"] == str(MAX_DRAWN_BOXES)
    drawn = Image.open(io.BytesIO(response.content))
    assert drawn.width * drawn.height <= MAX_DRAWN_PIXELS and len(response.content) < 4 * 2**20
    assert annotate_peak - detect_peak < 96, (detect_peak, annotate_peak)
    assert resident < detect_peak   # the full-size image was let go after drawing


# --- cache ------------------------------------------------------------------------------------

def test_cache_hits_and_failures_are_not_cached(tmp_path):
    classifier = FakeClassifier()
    calls = []
    original = classifier.predict
    classifier.predict = lambda images: calls.append(1) or original(images)
    app = create_app(Settings(classification_enabled=True, models_dir=tmp_path), classifier=classifier)
    client = app.test_client()
    first = post_images(client, "/v2/classify", RED).get_json()
    second = post_images(client, "/v2/classify", RED).get_json()
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["results"][0]["predictions"] == second["results"][0]["predictions"]
    assert len(calls) == 1
    # Other parameters are another entry.
    assert post_images(client, "/v2/classify?top_k=1", RED).get_json()["cached"] is False
    # v1 answers share the cache and keep their shape.
    assert post_images(client, "/classify-image?top_k=1", RED).status_code == 200
    # A failure is never cached.
    classifier.fail_predict = True
    assert post_images(client, "/v2/classify", BLUE).status_code == 500
    classifier.fail_predict = False
    assert post_images(client, "/v2/classify", BLUE).get_json()["cached"] is False


def test_urls_are_cached_by_url_without_fetching_again(tmp_path):
    with ImageServer() as server:
        client = make_app(tmp_path, fetch_allow_hosts=frozenset({f"127.0.0.1:{server.port}"})).test_client()
        url = server.url("/cat.jpg")
        assert client.post("/v2/detect", json={"image_url": url}).get_json()["cached"] is False
        assert client.post("/v2/detect", json={"image_url": url}).get_json()["cached"] is True
        assert server.hits["/cat.jpg"] == 1


def test_cache_expires_after_ttl(tmp_path):
    now = [1000.0]
    client = make_app(tmp_path, cache=ResultCache(16, 1, timer=lambda: now[0])).test_client()
    assert post_images(client, "/v2/classify", RED).get_json()["cached"] is False
    assert post_images(client, "/v2/classify", RED).get_json()["cached"] is True
    now[0] += 2
    assert post_images(client, "/v2/classify", RED).get_json()["cached"] is False


class NaNClassifier(FakeClassifier):
    """A model whose answer is not a probability (a broken network, a wrong `output` setting)."""

    def predict(self, images):
        out = super().predict(images)
        out[:, 0] = np.nan
        return out


class InvertedBoxes(FakeDetector):
    def _detect(self, image, min_score):
        width, height = image.size
        return [Detection("dog", 0.9, (width, height, 0, 0))]


def test_a_model_answering_outside_its_contract_fails_that_image_and_is_not_cached(tmp_path, caplog):
    """Before: NaN went out as the JSON word NaN (not JSON), and an inverted box made annotate=true a 500 crash."""
    client = create_app(Settings(classification_enabled=True, detection_enabled=True, models_dir=tmp_path),
                        classifier=NaNClassifier(), detector=InvertedBoxes()).test_client()
    for path in ("/v2/classify", "/classify-image", "/v2/detect", "/detect-objects", "/v2/detect?annotate=true"):
        for _ in range(2):  # the second time computed again: a failure is never cached
            response = post_images(client, path, RED)
            assert response.status_code == 500 and response.get_json()["error"]["type"] == "inference_failed"
            assert "NaN" not in response.get_data(as_text=True)
    batch = post_images(client, "/v2/classify", RED, BLUE).get_json()
    assert [r["error"]["type"] for r in batch["results"]] == ["inference_failed"] * 2
    assert any("answered outside its contract" in r.getMessage() for r in caplog.records)


class LogitsClassifier(FakeClassifier):
    """Raw network outputs, not probabilities (a model folder that should say 'output': 'logits')."""

    def predict(self, images):
        return super().predict(images) * 40 - 10


def test_a_model_whose_scores_are_not_probabilities_is_served_as_it_answers_never_cached(tmp_path, caplog):
    client = create_app(Settings(classification_enabled=True, models_dir=tmp_path),
                        classifier=LogitsClassifier()).test_client()
    answers = [post_images(client, "/v2/classify", RED).get_json() for _ in range(3)]
    assert all(a["cached"] is False for a in answers)
    assert answers[0]["results"][0]["predictions"][0]["score"] > 1
    assert answers[0]["results"] == answers[2]["results"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "outside [0, 1]" in warnings[0]


# --- report -----------------------------------------------------------------------------------

def test_report_counts_requests_hits_and_times(client):
    for _ in range(3):
        post_images(client, "/v2/classify", RED)
    post_images(client, "/detect-objects", BLUE)
    report = client.get("/report").get_json()
    top = report["images"][0]
    assert top["num_requested"] == 3 and top["num_cache_hits"] == 2
    assert top["key"].startswith("sha256:")
    assert top["processing_time_min"] > 0 and top["processing_time_min"] <= top["processing_time_mean"] <= top["processing_time_max"]
    assert report["models"]["fake_classifier"]["num_requested"] == 3
    assert report["routes"]["/v2/classify"]["num_requested"] == 3
    assert report["routes"]["/detect-objects"]["num_requested"] == 1
    assert report["distinct_images"] == 2


def test_report_prunes_old_entries_as_it_goes():
    now = [0.0]
    report = UsageReport(window=3600, top_n=2, clock=lambda: now[0])
    report.record(image_key="a", model="m", route="/r", seconds=0.5)
    report.record(image_key="b", model="m", route="/r", seconds=0.1)
    now[0] = 1800
    report.record(image_key="b", model="m", route="/r", seconds=0.3)
    now[0] = 3700  # the first two records are out of the window
    report.record(image_key="c", model="m", route="/r", seconds=None, cache_hit=True)
    assert "a" not in report._series["image"]  # pruned on record, before any read
    snapshot = report.snapshot()
    assert [i["key"] for i in snapshot["images"]] == ["b", "c"]
    b = snapshot["images"][0]
    assert b["num_requested"] == 1 and b["processing_time_max"] == 0.3
    c = snapshot["images"][1]
    assert c["num_cache_hits"] == 1 and c["processing_time_mean"] is None  # hits are not 0-second work



def test_report_memory_is_bounded_by_its_key_cap():
    """Every fresh image adds one key until max_keys, within the documented bound (docs/operations.md: about 650 bytes
    per image, MAX_IMAGES of them: about 65 MB, here with a few per cent of slack), and past the
    cap memory stops growing: the least recently seen key goes, and so do its entries in the
    prune queue (they used to stay, with their names, for the whole window)."""
    import hashlib
    import tracemalloc

    cap = 5_000
    report = UsageReport(window=3 * 86400, top_n=10, max_keys=cap, clock=lambda: 1_000_000.0)
    key = lambda i: ("url:" if i % 2 else "sha256:") + hashlib.sha256(str(i).encode()).hexdigest()
    tracemalloc.start()
    try:
        for i in range(cap):  # the keys are made here too: the report keeps them
            report.record(image_key=key(i), model="m", route="/r", seconds=0.05)
        at_cap, _ = tracemalloc.get_traced_memory()
        later = []
        for n in range(1, 3 * cap + 1):
            report.record(image_key=key(cap + n), model="m", route="/r", seconds=0.05)
            if n % cap == 0:
                later.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert at_cap / cap * MAX_IMAGES < 70_000_000, f"{at_cap / cap:.0f} bytes per image key"
    assert len(report._series["image"]) == cap and key(0) not in report._series["image"]
    assert len(report._order) <= 2 * (cap + 2) + 1024
    assert max(later) < 1.6 * at_cap, (at_cap, later)  # flat: 3 x cap fresh keys later
    assert report.snapshot()["distinct_images"] == cap

def test_report_series_counts_requests_and_errors_per_minute_over_the_last_hour():
    """GET /report's "series": every one of the last 60 minutes, oldest first, 0 where nothing
    came; a record older than the hour counts in the totals, not in the series; none before the
    window."""
    now = [1_000_000 * 60 + 30.0]
    minute = int(now[0] // 60)
    report = UsageReport(window=3 * 3600, top_n=5, clock=lambda: now[0])
    for minutes_ago, route, error in ((90, "/a", False), (59, "/a", True), (5, "/a", False), (5, "/b", False),
                                      (0, "/b", False)):
        now[0] = (minute - minutes_ago) * 60 + 30.0
        report.record(image_key="k", model="m", route=route, seconds=0.1, error=error)
    snapshot = report.snapshot()
    series = snapshot["series"]
    assert series["minutes"] == list(range(minute - 59, minute + 1))
    assert series["requests"] == [1] + [0] * 53 + [2] + [0] * 4 + [1]
    assert series["errors"] == [1] + [0] * 59
    assert snapshot["routes"]["/a"]["num_requested"] == 3       # the one 90 minutes ago too
    short = UsageReport(window=600, top_n=5, clock=lambda: now[0])
    short.record(image_key=None, model="m", route="/a", seconds=0.1)
    assert short.snapshot()["series"]["minutes"] == list(range(minute - 9, minute + 1))   # the window's 10
    empty = UsageReport(window=3600, top_n=5, clock=lambda: now[0]).snapshot()["series"]
    assert len(empty["minutes"]) == 60 and set(empty["requests"]) == set(empty["errors"]) == {0}


def test_report_series_over_http(client):
    post_images(client, "/v2/classify", RED)
    post_images(client, "/v2/classify", RED, b"not an image")   # two images, one an error
    series = client.get("/report").get_json()["series"]
    assert len(series["minutes"]) == 60 and series["minutes"] == sorted(series["minutes"])
    assert (sum(series["requests"]), sum(series["errors"])) == (3, 1)


# --- Server-Timing ----------------------------------------------------------------------------

class SlowFakeClassifier(FakeClassifier):
    def predict(self, images):
        import time
        time.sleep(0.02)
        return super().predict(images)


def server_timing(response) -> dict[str, float]:
    figures = {}
    for entry in response.headers["Server-Timing"].split(", "):
        name, duration = entry.split(";")
        assert duration.startswith("dur=")
        figures[name] = float(duration[4:])
    return figures


def test_inference_answers_say_where_their_time_went_in_server_timing(tmp_path):
    """decode (fetching and decoding), inference (the model) summed over the request's images,
    and total (the request in the service), in milliseconds; 0 of both for a cache hit."""
    app = create_app(Settings(classification_enabled=True, detection_enabled=True, models_dir=tmp_path),
                     classifier=SlowFakeClassifier(), detector=FakeDetector())
    client = app.test_client()
    photo = imaging.jpeg(size=(1200, 900))
    first = server_timing(post_images(client, "/v2/classify", photo))
    assert list(first) == ["decode", "inference", "total"]
    assert first["decode"] > 0 and first["inference"] >= 20
    assert first["total"] >= first["decode"] + first["inference"] - 0.2   # each rounded to 0.1 ms
    hit = server_timing(post_images(client, "/v2/classify", photo))
    assert (hit["decode"], hit["inference"]) == (0.0, 0.0) and hit["total"] > 0
    batch = server_timing(post_images(client, "/v2/classify?top_k=1", RED, BLUE))
    assert batch["inference"] >= 20                                      # one model call for both
    for path in ("/classify-image", "/detect-objects", "/v2/detect", "/v2/detect?annotate=true",
                 "/v1/vision/detection", "/v1/vision/scene"):
        answer = post_images(client, path, BLUE)
        assert answer.status_code == 200 and set(server_timing(answer)) == {"decode", "inference", "total"}, path
    assert "Server-Timing" in post_images(client, "/v2/classify", b"not an image").headers   # an image's error too
    for path in ("/health", "/models", "/report", "/"):
        assert "Server-Timing" not in client.get(path).headers, path


# --- OpenAPI, docs, metrics -------------------------------------------------------------------

def test_openapi_document_is_valid_and_complete(app, client):
    from openapi_spec_validator import validate
    document = client.get("/openapi.json").get_json()
    validate(document)
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<path:", "{").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, (path, method)


def test_docs_are_served_from_local_assets(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html  # no CDN
    # No inline script or event handler: the page's policy allows scripts from the service only.
    assert re.findall(r"<script(?![^>]*\ssrc=)", html) == [] and re.findall(r"\son\w+\s*=", html) == []
    for asset in ("docs/static/swagger-ui.css", "docs/static/swagger-ui-bundle.js",
                  "docs/static/swagger-ui-standalone-preset.js", "docs/static/docs.js"):
        assert asset in html
        with client.get("/" + asset) as response:
            assert response.status_code == 200 and len(response.data) > (200 if asset.endswith("docs.js") else 10_000)
    with client.get("/docs/static/docs.js") as script:
        assert script.mimetype.endswith("javascript") and b"SwaggerUIBundle" in script.data
        assert b"validatorUrl: null" in script.data   # no badge fetched from validator.swagger.io
    assert client.get("/docs/static/../../app.py").status_code == 404
    assert client.get("/docs/static/swagger-ui.js.map").status_code == 404


def test_metrics(client):
    post_images(client, "/v2/classify", RED)
    post_images(client, "/v2/classify", RED)
    client.get("/nope")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{method="POST",route="/v2/classify",status="200"} 2.0' in text
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'http_request_duration_seconds_bucket{le="0.005",route="/v2/classify"}' in text
    assert 'model_inference_seconds_count{model="fake_classifier"} 1.0' in text
    assert 'result_cache_requests_total{result="hit"} 1.0' in text
    assert 'result_cache_requests_total{result="miss"} 1.0' in text
    assert 'model_state{model="fake_classifier",state="ready"} 1.0' in text
    assert 'model_state{model="fake_detector",state="not_loaded"} 1.0' in text
    assert "http_requests_in_flight" in text


# --- API keys and the request log -------------------------------------------------------------

def test_api_keys(tmp_path, caplog):
    client = make_app(tmp_path, api_keys=("s3cret-key-one", "another-key")).test_client()
    caplog.set_level(logging.INFO)
    denied = post_images(client, "/v2/classify", RED)
    assert denied.status_code == 401 and denied.get_json()["error"]["type"] == "unauthorized"
    assert "Bearer" in denied.headers["WWW-Authenticate"]
    assert client.get("/models", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/models", headers={"X-API-Key": "s3cret-key-one"}).status_code == 200
    assert client.get("/models", headers={"Authorization": "Bearer another-key"}).status_code == 200
    for path in ("/report", "/status", "/models/fake_classifier/labels"):
        assert client.get(path).status_code == 401
    for path in ("/health", "/ready", "/metrics"):
        assert client.get(path).status_code in (200, 503)
    assert "s3cret-key-one" not in caplog.text and "another-key" not in caplog.text


def test_the_api_description_opens_without_a_key_and_authorize_takes_it(tmp_path):
    """With API_KEYS set, /docs, its files and /openapi.json load (the description is public);
    the document declares the key schemes, so Swagger UI's Authorize button sends X-API-Key."""
    client = make_app(tmp_path, api_keys=("s3cret-key-one",)).test_client()
    for path in ("/docs", "/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css",
                 "/docs/static/docs.js", "/openapi.json"):
        with client.get(path) as response:
            assert response.status_code == 200, path
    document = client.get("/openapi.json").get_json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer"}
    assert {"apiKey": []} in document["security"]
    for path in ("/openapi.json", "/docs", "/docs/static/{filename}", "/health"):
        assert document["paths"][path]["get"]["security"] == []
    assert "security" not in document["paths"]["/v2/detect"]["post"]   # the document's: a key
    # An inference route still needs the key.
    assert post_images(client, "/v2/detect", RED).status_code == 401
    assert client.post("/v2/detect", data=multipart(files={"image": ("a.jpg", RED)})[1],
                       content_type=multipart()[0], headers={"X-API-Key": "s3cret-key-one"}).status_code == 200


def _header_problems(method: str, path: str, response) -> list[str]:
    problems = [f"{name} missing" for name, value in SECURITY_HEADERS.items() if response.headers.get(name) != value]
    policy = response.headers.get("Content-Security-Policy", "")
    if response.mimetype == "text/html":
        scripts = next((d for d in policy.split("; ") if d.startswith("script-src ")), "")
        if scripts != "script-src 'self'" or "frame-ancestors 'none'" not in policy or "default-src 'none'" not in policy:
            problems.append(f"page policy {policy!r}")
    elif policy != API_POLICY:
        problems.append(f"policy {policy!r}")
    static = path.startswith("/docs/static/") and response.status_code == 200
    if (response.headers.get("Cache-Control") == "no-store") == static:
        problems.append(f"Cache-Control {response.headers.get('Cache-Control')!r}")
    return [f"{method} {path} {response.status_code}: {p}" for p in problems]


def test_security_headers_on_every_answer(tmp_path):
    """Every registered route, and the errors: unknown path, wrong method, no key, too large,
    bad input, a failing model, an unexpected exception, DeepStack's error shape."""
    app = make_app(tmp_path, max_upload_mb=1)
    app.add_url_rule("/boom", "boom", lambda: 1 / 0)
    keyed = make_app(tmp_path, api_keys=("k",)).test_client()
    client = app.test_client()
    answers = [(method, path, call(client, method, path)) for method, path in every_route(app)]
    answers += [("GET", "/nope", client.get("/nope")), ("DELETE", "/health", client.delete("/health")),
                ("GET", "/docs/static/x", client.get("/docs/static/x")),
                ("POST", "/v2/detect", keyed.post("/v2/detect")), ("POST", "/v1", keyed.post("/v1/vision/detection")),
                ("POST", "/v2/classify", call(client, "POST", "/v2/classify", b"\0" * (2 << 20))),
                ("POST", "/v1/vision/scene", call(client, "POST", "/v1/vision/scene", b"not an image")),
                ("GET", "/v2/detect?min_score=x", call(client, "POST", "/v2/detect?min_score=x"))]
    app.extensions["registry"].slots["fake_detector"].model.fail_predict = True
    answers.append(("POST", "/detect-objects", call(client, "POST", "/detect-objects", imaging.png())))
    problems = [p for method, path, response in answers for p in _header_problems(method, path, response)]
    statuses = {response.status_code for _, _, response in answers}
    assert problems == [] and {200, 400, 401, 404, 405, 413, 500} <= statuses, (problems, statuses)


class NonFiniteClassifier(FakeClassifier):
    def predict(self, images):
        return np.array([[np.nan, np.inf, -np.inf]] * len(images))


class NaNDetector(FakeDetector):
    def _detect(self, image, min_score):
        return [Detection("dog", float("nan"), (0, 0, 1, 1)), Detection("cat", float("inf"), (1, 1, 2, 2))]


def _refuse_constant(name):
    raise AssertionError(f"{name} in an answer")


def test_no_route_ever_answers_nan_or_infinity(tmp_path):
    """Models that answer NaN and infinities: every registered route answers strict JSON (or
    its own non-JSON type); a result that cannot be JSON is a clean 500 in the route family's
    error shape, never a bare NaN token nor a traceback."""
    app = create_app(Settings(classification_enabled=True, detection_enabled=True, models_dir=tmp_path,
                              cache_maxsize=0), classifier=NonFiniteClassifier(), detector=NaNDetector())
    client = app.test_client()
    seen = set()
    for method, path in every_route(app):
        for query in ("", "?min_score=0&min_probability=0"):
            response = call(client, method, path + query)
            seen.add((path, response.status_code))
            assert response.status_code < 500 or response.status_code == 500 and response.is_json, path
            if response.mimetype != "application/json":
                continue
            body = json.loads(response.get_data(as_text=True), parse_constant=_refuse_constant)
            if response.status_code == 500:   # ours, or DeepStack's shape
                assert body["error"]["type"] == "inference_failed" if "success" not in body else \
                    body["success"] is False, (path, body)
    assert ("/detect-objects", 500) in seen and ("/v1/vision/detection", 500) in seen and ("/v2/detect", 500) in seen
    assert ("/classify-image", 500) in seen and ("/v1/vision/scene", 500) in seen


def test_the_json_encoder_refuses_what_is_not_json(app):
    """The second line of defence, behind the pipeline's checks of every answer: NaN or an
    infinity reaching the encoder is an error, never a bare token in a body."""
    with app.app_context():
        for value in (float("nan"), float("inf"), [1.0, -float("inf")], {"score": float("nan")}):
            with pytest.raises(errors.NonFiniteResult):
                app.json.dumps(value)
        assert app.json.loads(app.json.dumps({"score": 0.5})) == {"score": 0.5}


def test_request_id_and_json_log_line(client, caplog):
    caplog.set_level(logging.INFO, logger="image_service.access")
    response = post_images(client, "/classify-image", RED)
    generated = response.headers["X-Request-ID"]
    assert len(generated) == 32
    client.post("/v2/classify", json={"image_base64": b64(RED)})
    response = client.post("/v2/classify", json={"image_base64": b64(RED)}, headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    for bad in ("bad id with spaces", "x" * 500, "<script>"):
        assert client.get("/health", headers={"X-Request-ID": bad}).headers["X-Request-ID"] != bad
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "image_service.access"]
    line = next(entry for entry in lines if entry["request_id"] == "abc-123")
    assert line["route"] == "/v2/classify" and line["status"] == 200 and line["model"] == "fake_classifier"
    assert line["image_size"] == "40x30" and line["cache_hit"] is True and line["duration_ms"] > 0
