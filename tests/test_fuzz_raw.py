"""Fuzzing the raw request surface, not only schema-valid requests: random and mutated
multipart bodies, nested and huge JSON in several encodings, odd content types, charsets,
query strings and headers, against the app with instant fake models.

Property: every answer is a 200 or one of our JSON errors (4xx), never a 5xx, and nothing is
logged with a traceback or at ERROR level for a client's input. CI runs a short budget;
FUZZ_EXAMPLES raises it (about 350 examples a second on a quiet 2-core machine), and
--hypothesis-show-statistics shows the spread of statuses reached; docs/testing.md shows the loop
that runs it for an hour in rounds with fresh seeds (docs/reliability.md records one):
    FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -p no:cacheprovider --timeout=0 tests/test_fuzz_raw.py \
        --hypothesis-seed=1 --hypothesis-show-statistics
"""
from __future__ import annotations

import json
import logging
import os
import tempfile

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app import create_app
from config import Settings
from tests.support import imaging
from tests.support.fakes import FakeClassifier, FakeDetector
from tests.support.http import b64, multipart

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
ROUTES = ("/classify-image", "/detect-objects", "/v2/classify", "/v2/detect")
# The DeepStack / CodeProject.AI routes answer their clients' error shape instead.
DEEPSTACK_ROUTES = ("/v1/vision/detection", "/v1/vision/custom/fake_detector", "/v1/vision/custom/nope",
                    "/v1/vision/scene", "/v1/vision/custom/list")
CONTENT_TYPES = (
    "multipart/form-data; boundary=testboundary7MA4YWxk", "multipart/form-data", "multipart/form-data; boundary=",
    "multipart/form-data; boundary=testboundary7MA4YWxk; charset=utf-16", "multipart/mixed; boundary=x",
    "application/json", "application/json; charset=utf-16", "application/json; charset=latin-1",
    "application/json; charset=nonsense", "application/x-www-form-urlencoded", "text/plain", "image/jpeg",
    "application/octet-stream", "", "*/*", "application/json;;;", "multipart/form-data; boundary=\"a b\"",
)
SEED_MULTIPART = multipart({"top_k": "3"}, {"image": ("a.jpg", imaging.jpeg(size=(24, 16)))})[1]
SEED_DEEPSTACK = multipart({"min_confidence": "0.4", "api_key": ""}, {"image": ("f.jpg", imaging.jpeg(size=(32, 32)))})[1]
SEED_JSON = json.dumps({"images": [{"image_base64": b64(imaging.png(size=(8, 8)))}, {"image_url": "http://x/"}]})


class _Collect(logging.Handler):
    """Records anything logged with a traceback or at ERROR level, for the property."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, record):
        if record.exc_info or record.levelno >= logging.ERROR:
            self.bad.append(record.getMessage())


def _client():
    app = create_app(Settings(classification_enabled=True, detection_enabled=True,
                              models_dir=tempfile.mkdtemp(), max_request_images=4, max_upload_mb=1),
                     classifier=FakeClassifier(), detector=FakeDetector())
    for slot in app.extensions["registry"].slots.values():
        slot.ensure_loaded()  # ready, so any 5xx is a finding
    return app.test_client()


CLIENT = _client()
COLLECT = _Collect()
logging.getLogger().addHandler(COLLECT)


def mutate(draw, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 6))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if data and draw(st.booleans()):
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] if draw(st.booleans()) else data[cut:]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.sampled_from([b"\r\n", b"--", b"\"", b"[", b"{", b"\x00", b"\xff" * 3, b"=" * 9]))
    return bytes(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30)


@st.composite
def bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "multipart", "json", "deep", "huge", "encoded", "mutated json"]))
    if kind == "random":
        return draw(st.binary(max_size=4096))
    if kind == "multipart":
        return mutate(draw, draw(st.sampled_from([SEED_MULTIPART, SEED_DEEPSTACK])))
    if kind == "json":
        value = draw(json_values | st.fixed_dictionaries({"images": st.lists(json_values, max_size=6)}))
        return json.dumps(value).encode()
    if kind == "deep":
        depth = draw(st.integers(20, 60_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"images":[', "]}")]))
        return (opener * depth + "1" + closer * draw(st.integers(0, depth))).encode()
    if kind == "huge":
        return json.dumps({"image_base64": "A" * draw(st.integers(0, 900_000))}).encode()
    if kind == "encoded":
        encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "utf-8-sig", "latin-1", "cp1252"]))
        return SEED_JSON.encode(encoding)
    return mutate(draw, SEED_JSON.encode())


# Header text a client can put on the wire (a line break would end the header).
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=200)
headers = st.dictionaries(
    st.sampled_from(["X-Request-ID", "Accept", "Content-Encoding", "Accept-Charset", "X-API-Key", "Authorization",
                     "Content-Language", "X-Forwarded-For"]),
    header_text, max_size=4)
queries = st.dictionaries(st.sampled_from(["top_k", "min_probability", "min_score", "model", "classes",
                                           "max_detections", "annotate", "zzz"]),
                          st.text(max_size=30), max_size=4)


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(route=st.sampled_from(ROUTES), content_type=st.sampled_from(CONTENT_TYPES) | header_text,
       body=bodies(), extra=headers, query=queries)
def test_raw_requests_get_a_200_or_one_of_our_json_errors(route, content_type, body, extra, query):
    COLLECT.bad.clear()
    if route == "/v2/detect" and "annotate" not in query:
        query = {**query, "annotate": "true"} if len(body) % 2 else query  # the image answer too
    response = CLIENT.post(route, data=body, headers={**extra, "Content-Type": content_type}, query_string=query)
    status = response.status_code
    event(f"status {status}")  # --hypothesis-show-statistics shows how deep the inputs got
    assert status < 500, (status, response.get_data()[:300])
    if status != 200:
        error = response.get_json(silent=True)
        assert error and set(error["error"]) >= {"code", "type", "message"}, response.get_data()[:300]
        assert error["error"]["code"] == status
    assert COLLECT.bad == []


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(route=st.sampled_from(DEEPSTACK_ROUTES), content_type=st.sampled_from(CONTENT_TYPES) | header_text,
       body=bodies(), extra=headers, query=queries)
def test_raw_requests_to_the_deepstack_routes_get_a_200_or_their_json_errors(route, content_type, body, extra,
                                                                              query):
    COLLECT.bad.clear()
    response = CLIENT.post(route, data=body, headers={**extra, "Content-Type": content_type}, query_string=query)
    status = response.status_code
    event(f"status {status}")
    assert status < 500, (status, response.get_data()[:300])
    answer = response.get_json(silent=True)
    assert answer and answer["success"] is (status == 200) and answer["code"] == status, response.get_data()[:300]
    if status != 200:
        assert isinstance(answer["error"], str) and answer["error"], answer
    assert COLLECT.bad == []


def test_the_app_still_answers_after_the_fuzzing():
    response = CLIENT.post("/classify-image", data={"image": (imaging.jpeg_file(), "a.jpg")},
                           content_type="multipart/form-data")
    assert response.status_code == 200
