"""Fuzzing, bounded for CI: hypothesis on the image decoding path, and schemathesis against
/openapi.json with instant fake models. FUZZ_EXAMPLES raises the budget for long runs by hand:
    FUZZ_EXAMPLES=20000 ./run_tests.sh tests/test_fuzz.py
"""
from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import not_a_server_error

from app import create_app
from config import Settings
from dataplane.images import ImageLimits, decode_image
from errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat
from tests.support import imaging
from tests.support.fakes import FakeClassifier, FakeDetector

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
LIMITS = ImageLimits(max_pixels=4_000_000, max_side=4000)
EXPECTED = (InvalidImage, UnsupportedImageFormat, ImageTooLarge)

SEEDS = [imaging.encode(Image.effect_noise((48, 32), 50).convert(mode), fmt)
         for fmt, mode in (("JPEG", "RGB"), ("PNG", "RGBA"), ("GIF", "P"), ("BMP", "RGB"), ("WEBP", "RGB"),
                           ("TIFF", "RGB"), ("PNG", "I;16"), ("TIFF", "CMYK"), ("JPEG", "L"))]


def check_decode(data: bytes) -> None:
    try:
        decoded = decode_image(data, LIMITS)
    except EXPECTED:
        return
    assert decoded.image.mode == "RGB"
    assert decoded.width * decoded.height <= LIMITS.max_pixels


@st.composite
def mutated_images(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        start = draw(st.integers(0, len(data)))
        data[start:start] = draw(st.binary(max_size=64))
    return bytes(data)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_images())
def test_mutated_images_decode_or_fail_cleanly(data):
    check_decode(data)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_decode_or_fail_cleanly(data):
    check_decode(data)


def _app():
    import tempfile
    app = create_app(Settings(classification_enabled=True, detection_enabled=True,
                              models_dir=tempfile.mkdtemp(), max_request_images=4),
                     classifier=FakeClassifier(), detector=FakeDetector())
    for slot in app.extensions["registry"].slots.values():
        slot.ensure_loaded()  # ready, so any 5xx is a finding
    return app


schema = schemathesis.openapi.from_wsgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=max(10, EXAMPLES // 10), deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx_to_generated_requests(case):
    case.call_and_validate(checks=[not_a_server_error])
