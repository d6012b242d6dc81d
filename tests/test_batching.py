"""Micro-batching and reduced-scale JPEG decoding."""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

import errors
from app import create_app
from config import Settings
from dataplane.images import decode_image
from registry import create_model
from registry.batching import MicroBatcher
from tests.support import imaging
from tests.support.fakes import FakeClassifier, FakeDetector


class Recorder:
    def __init__(self, delay=0.05, fail=False):
        self.calls, self.delay, self.fail = [], delay, fail

    def __call__(self, images):
        self.calls.append(list(images))
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("model failed")
        return np.array([[float(i)] for i in images])


def test_concurrent_requests_become_batches_and_get_their_own_rows():
    predict = Recorder()
    batcher = MicroBatcher(predict, max_images=8, timeout_ms=5)
    out = {}

    def call(i):
        out[i] = batcher.submit([i, i + 100])
    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(12):
        assert out[i].ravel().tolist() == [i, i + 100]
    assert len(predict.calls) < 12 and max(len(c) for c in predict.calls) <= 8


def test_a_lone_request_is_dispatched_at_once():
    batcher = MicroBatcher(Recorder(delay=0), max_images=8, timeout_ms=1000)
    started = time.perf_counter()
    batcher.submit([1])
    assert time.perf_counter() - started < 0.1


def test_a_forming_batch_waits_for_announced_requests():
    predict = Recorder(delay=0)
    batcher = MicroBatcher(predict, max_images=8, timeout_ms=500)
    with batcher.expecting() as token:
        first = threading.Thread(target=batcher.submit, args=([1],))
        first.start()
        time.sleep(0.1)  # the announced request is still "decoding"
        batcher.submit([2], token)
    first.join()
    assert predict.calls == [[1, 2]]


def test_a_withdrawn_announcement_stops_the_wait():
    batcher = MicroBatcher(Recorder(delay=0), max_images=8, timeout_ms=2000)
    with batcher.expecting():
        t = threading.Thread(target=batcher.submit, args=([1],))
        t.start()
        time.sleep(0.05)
    started = time.perf_counter()
    t.join()
    assert time.perf_counter() - started < 0.5


def test_a_failure_reaches_every_caller_in_the_batch():
    batcher = MicroBatcher(Recorder(fail=True), max_images=8, timeout_ms=5)
    with pytest.raises(RuntimeError):
        batcher.submit([1])
    with pytest.raises(RuntimeError):
        batcher.submit([2])


def test_requests_with_other_options_never_share_a_call():
    """A detector's call answers one min_score: requests asking for another one go in another
    batch, and each gets the answer for its own threshold."""
    calls = []
    release = threading.Event()

    def predict(images, min_score):
        calls.append((min_score, len(images)))
        release.wait(5)
        return [[(image, min_score)] for image in images]
    batcher = MicroBatcher(predict, max_images=8, timeout_ms=50)
    out = {}

    def call(i, threshold):
        out[i] = batcher.submit([i], options=(threshold,))
    first = threading.Thread(target=call, args=(0, 0.5))
    first.start()
    while not calls:   # the first call is running: the others queue up behind it
        time.sleep(0.01)
    threads = [threading.Thread(target=call, args=(i, 0.5 if i % 2 else 0.2)) for i in range(1, 7)]
    for t in threads:
        t.start()
    while sum(len(item.images) for item in batcher._queue) < 6:
        time.sleep(0.01)
    release.set()
    for t in [first, *threads]:
        t.join()
    for i in range(7):
        assert out[i] == [[(i, 0.5 if i % 2 or i == 0 else 0.2)]]
    assert sum(n for _, n in calls) == 7
    assert len(calls) < 7, calls   # the queued requests were batched...
    assert all(n > 1 for _, n in calls[1:]), calls


def test_requests_whose_clients_left_are_never_computed_nor_waited_for():
    """Clients that gave up while the model was busy (a camera at its timeout): their images are
    not in the next call, and each such request ends at once with ClientGone."""
    release, calls = threading.Event(), []

    def predict(images):
        calls.append(list(images))
        release.wait(5)
        return np.array([[float(i)] for i in images])
    batcher = MicroBatcher(predict, max_images=8, timeout_ms=5)
    gone = {i: threading.Event() for i in range(1, 5)}
    outcome = {}

    def call(i):
        try:
            outcome[i] = batcher.submit([i], gone=gone[i].is_set if i in gone else lambda: False)
        except errors.ClientGone:
            outcome[i] = "gone"
    busy = threading.Thread(target=call, args=(0,))
    busy.start()
    while not calls:
        time.sleep(0.01)
    waiting = [threading.Thread(target=call, args=(i,)) for i in range(1, 6)]
    for t in waiting:
        t.start()
    while len(batcher._queue) < 5:
        time.sleep(0.01)
    for i in (1, 2, 3):
        gone[i].set()
    started = time.monotonic()
    for i in (1, 2, 3):
        waiting[i - 1].join(2)
        assert outcome[i] == "gone"
    assert time.monotonic() - started < 1.0   # not after the running call
    release.set()
    for t in [busy, *waiting]:
        t.join(5)
    assert calls == [[0], [4, 5]]
    assert outcome[4].ravel().tolist() == [4.0] and outcome[5].ravel().tolist() == [5.0]


class BatchRecorder(FakeClassifier):
    """A batchable fake that records its batch sizes. Its first call waits until `gate()` is
    true (every request admitted), so the test does not depend on thread timing."""
    batchable = True

    def __init__(self, gate=lambda: True):
        super().__init__()
        self.sizes: list[int] = []
        self.gate = gate

    def predict(self, images):
        if not self.sizes:
            deadline = time.monotonic() + 10
            while not self.gate() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)  # the admitted requests decode their tiny JPEGs and join the batch
        self.sizes.append(len(images))
        return super().predict(images)


def concurrent_classify(app, count: int) -> list[int]:
    results = []

    def call(i):
        data = imaging.jpeg(color=(i * 20, 10, 10))
        response = app.test_client().post("/classify-image", data={"image": (io.BytesIO(data), "a.jpg")},
                                          content_type="multipart/form-data")
        results.append(response.status_code)
    threads = [threading.Thread(target=call, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_http_requests_are_batched_beyond_the_worker_count_at_default_settings(tmp_path):
    """Defaults: 4 workers, a queue of 8, batches of up to 8. A request waiting for the batched
    call hands its worker place on, so the batch is not capped at 4."""
    settings = Settings(classification_enabled=True, models_dir=tmp_path)
    assert (settings.inference_concurrency, settings.max_queue, settings.max_batch_size) == (4, 8, 8)
    classifier = BatchRecorder(gate=lambda: app.extensions["admission"].admitted == 8)
    app = create_app(settings, classifier=classifier)
    assert concurrent_classify(app, 8) == [200] * 8
    assert sum(classifier.sizes) == 8 and len(classifier.sizes) < 8
    assert max(classifier.sizes) > settings.inference_concurrency, classifier.sizes
    # Every place came back: the next requests are admitted and answered.
    assert concurrent_classify(app, 12) == [200] * 12
    assert app.extensions["admission"].admitted == 0


class DetectorBatchRecorder(FakeDetector):
    batchable = True

    def __init__(self, gate):
        super().__init__()
        self.calls: list[tuple[int, float]] = []
        self.gate = gate

    def predict(self, images, min_score):
        if not self.calls:
            deadline = time.monotonic() + 10
            while not self.gate() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
        self.calls.append((len(images), min_score))
        return super().predict(images, min_score)


def test_concurrent_detections_are_batched_per_threshold(tmp_path):
    settings = Settings(detection_enabled=True, models_dir=tmp_path)
    detector = DetectorBatchRecorder(gate=lambda: app.extensions["admission"].admitted == 8)
    app = create_app(settings, detector=detector)
    answers = []

    def call(i):
        data = imaging.jpeg(size=(40 + i, 30))
        response = app.test_client().post("/detect-objects", data={"image": (io.BytesIO(data), "a.jpg")},
                                          content_type="multipart/form-data")
        answers.append((i, response.status_code, response.get_json()))
    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [status for _, status, _ in answers] == [200] * 8
    assert sum(n for n, _ in detector.calls) == 8 and len(detector.calls) < 8, detector.calls
    for i, _, body in answers:   # each request got its own image's detections
        assert [0, 0, (40 + i) // 2, 15] in [d["box_points"] for d in body], body


# --- reduced-scale decoding -----------------------------------------------------------------

def test_jpeg_draft_decodes_at_reduced_scale_but_reports_the_full_size():
    data = imaging.encode(Image.effect_noise((4000, 3000), 40).convert("RGB"), "JPEG", quality=85)
    decoded = decode_image(data, size_hint=(224, 224))
    assert (decoded.width, decoded.height) == (4000, 3000)
    assert decoded.image.size == (1000, 750)  # 1/4 scale, still >= 2 x 224 on both sides
    full = decode_image(data)
    assert full.image.size == (4000, 3000) and (full.width, full.height) == (4000, 3000)


def test_draft_with_exif_rotation_reports_the_upright_full_size():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = imaging.encode(Image.new("RGB", (4000, 1000), (9, 9, 9)), "JPEG", exif=exif)
    decoded = decode_image(data, size_hint=(224, 224))
    assert (decoded.width, decoded.height) == (1000, 4000)
    assert decoded.image.width < decoded.image.height and min(decoded.image.size) >= 448


def test_draft_keeps_the_top_label_of_the_real_classifier(tmp_path):
    from tests.support.shared_models import build_folder, photo, require_shared
    shared = require_shared()
    build_folder(tmp_path, "mobilenet_v2_quant")
    classifier = create_model("classification", "mobilenet_v2_quant", tmp_path)
    classifier.load()
    # The object photos whose labels shared/README.md states; the face photos are portraits that
    # ImageNet has no class for (the model's top two are a coin toss there, at any decoding scale).
    photos = sorted(p for folder in ("coral", "darknet", "ultralytics") for p in (shared / "images" / folder).glob("*.jpg"))
    assert len(photos) >= 8
    for path in photos:
        data = path.read_bytes()
        full = classifier.predict([decode_image(data).image])[0]
        draft = classifier.predict([decode_image(data, size_hint=classifier.input_size).image])[0]
        assert full.argmax() == draft.argmax(), path.name
    assert photo("coral/cat_720p.jpg").exists()
