"""The registry package directly: ModelSlot loading (once, failures, retry timing, safe reasons), model
calls (errors, CallPolicy hooks, micro-batching), Registry lookup and readiness, and
create_model's model-folder errors. Fake models only: no framework is imported."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

import errors
from contract import CLASSIFICATION, DETECTION, Classifier, FrameworksNeeded, InferenceOptions
from models.folder_spec import SpecError
from registry import FAILED, NOT_LOADED, READY, TASKS, CallPolicy, ModelSlot, Registry, create_model
from runtimes import frameworks
from tests.support.fakes import FakeClassifier, FakeDetector


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def image(width: int = 4, height: int = 4) -> Image.Image:
    return Image.new("RGB", (width, height), (200, 20, 20))


def named(model, name: str):
    model.name = name
    return model


def run_together(count: int, target) -> list:
    """Run target(i) in `count` threads released at the same moment; results (or exceptions) by i."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def worker(i):
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as exc:  # handed back to the test
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    return results


class BatchRecordingClassifier(Classifier):
    """Batchable; records each call's batch size; row i is (width of image i, batch size)."""

    name = "batching"
    batchable = True

    def __init__(self):
        self.batch_sizes: list[int] = []

    @property
    def labels(self):
        return ["width", "batch"]

    def load(self):
        pass

    def predict(self, images):
        self.batch_sizes.append(len(images))
        time.sleep(0.05)
        return np.array([[img.width, len(images)] for img in images], dtype=np.float64)


class RaisingClassifier(FakeClassifier):
    def __init__(self, exc: Exception):
        super().__init__()
        self.exc = exc

    def predict(self, images):
        raise self.exc


# --- loading ---------------------------------------------------------------------------------

def test_concurrent_first_use_loads_exactly_once():
    model = FakeClassifier(load_delay=0.2)
    slot = ModelSlot(model)
    results = run_together(8, lambda i: slot.ensure_loaded())
    assert all(result is model for result in results), results
    assert model.load_calls == 1
    assert slot.state == READY
    assert slot.load_seconds is not None and slot.load_seconds >= 0.2


def test_failed_load_is_not_retried_before_retry_seconds_and_is_after():
    clock = FakeClock()
    model = FakeClassifier(fail_load=True)
    slot = ModelSlot(model, policy=CallPolicy(retry_seconds=30), clock=clock)

    with pytest.raises(errors.ModelNotReady) as caught:
        slot.ensure_loaded()
    assert caught.value.code == 503
    assert caught.value.headers["Retry-After"] == "30"
    assert slot.state == FAILED and slot.reason
    assert slot.status()["state"] == FAILED and slot.status()["reason"] == slot.reason
    assert model.load_calls == 1

    clock.now += 29.9
    with pytest.raises(errors.ModelNotReady):
        slot.ensure_loaded()
    with pytest.raises(errors.ModelNotReady):
        slot.predict([image()])
    assert model.load_calls == 1, "a failed load was retried before retry_seconds"

    clock.now += 0.1  # exactly retry_seconds after the failure
    with pytest.raises(errors.ModelNotReady):
        slot.ensure_loaded()
    assert model.load_calls == 2

    model.fail_load = False
    clock.now += 29
    with pytest.raises(errors.ModelNotReady):
        slot.ensure_loaded()
    assert model.load_calls == 2  # the second failure restarted the wait
    clock.now += 1
    assert slot.ensure_loaded() is model
    assert model.load_calls == 3
    assert slot.state == READY and slot.reason is None


def test_framework_import_failure_names_the_module_and_does_not_blame_weights(monkeypatch):
    def broken_require(needed, options):
        raise ModuleNotFoundError("No module named 'tkinter'", name="tkinter")

    monkeypatch.setattr(frameworks, "require", broken_require)

    class NeedsTorch(FakeClassifier):
        def load(self):
            raise FrameworksNeeded()   # as a model asks before its conversion
    model = NeedsTorch()
    slot = ModelSlot(model, prepare=lambda: frameworks.prepare({frameworks.TORCH}, InferenceOptions()))
    with pytest.raises(errors.ModelNotReady) as caught:
        slot.ensure_loaded()
    assert slot.state == FAILED
    assert model.load_calls == 0, "the model loaded although its frameworks could not be imported"
    for text in (slot.reason, caught.value.message):
        assert "tkinter" in text
        assert "corrupt" not in text.lower() and "delete" not in text.lower()


def test_load_failure_reason_hides_the_exception_text():
    slot = ModelSlot(FakeClassifier(fail_load=True))
    with pytest.raises(errors.ModelNotReady) as caught:
        slot.ensure_loaded()
    for text in (slot.reason, caught.value.message, json.dumps(slot.status()), json.dumps(slot.details())):
        assert "/secret/path" not in text and "weights.h5" not in text and "garbage" not in text
    assert "OSError" in slot.reason


# --- model calls -----------------------------------------------------------------------------

def test_predict_turns_model_exception_into_inference_failed():
    slot = ModelSlot(FakeClassifier(fail_predict=True))
    with pytest.raises(errors.InferenceFailed) as caught:
        slot.predict([image()])
    assert caught.value.code == 500
    assert "deadbeef" not in caught.value.message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_predict_passes_api_errors_through():
    original = errors.InvalidImage("this one is bad")
    slot = ModelSlot(RaisingClassifier(original))
    with pytest.raises(errors.InvalidImage) as caught:
        slot.predict([image()])
    assert caught.value is original

    def timing_out(function):
        raise errors.InferenceTimeout()

    slot = ModelSlot(FakeClassifier(), policy=CallPolicy(limit=timing_out))
    with pytest.raises(errors.InferenceTimeout):
        slot.predict([image()])


def test_predict_loads_first_and_returns_the_models_answer():
    model = FakeClassifier()
    slot = ModelSlot(model)
    probabilities = slot.predict([image(), image()])
    assert model.load_calls == 1 and slot.state == READY
    assert probabilities.shape == (2, 3)
    assert probabilities[0].argmax() == 0  # a red image
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_policy_observe_gets_the_model_name_and_duration():
    observed = []
    policy = CallPolicy(observe=lambda model, seconds: observed.append((model, seconds)))
    slot = ModelSlot(named(FakeClassifier(), "observed_model"), policy=policy)
    slot.predict([image()])
    assert len(observed) == 1
    name, seconds = observed[0]
    assert name == "observed_model"
    assert isinstance(seconds, float) and 0 <= seconds < 5

    failing = ModelSlot(named(FakeClassifier(fail_predict=True), "failing_model"), policy=policy)
    with pytest.raises(errors.InferenceFailed):
        failing.predict([image()])
    assert [entry[0] for entry in observed] == ["observed_model", "failing_model"]


def test_policy_limit_runs_every_model_call():
    calls = []

    def limit(function):
        calls.append(function)
        return function()

    model = FakeDetector()
    slot = ModelSlot(model, policy=CallPolicy(limit=limit))
    found = slot.predict([image(8, 8)], 0.3)
    assert len(calls) == 1
    assert [d.label for d in found[0]] == ["dog", "cat"]  # min_score reached the model
    slot.predict([image(8, 8)], 0.5)
    assert len(calls) == 2


def test_concurrent_predicts_are_micro_batched():
    model = BatchRecordingClassifier()
    slot = ModelSlot(model, policy=CallPolicy(max_batch_size=8, batch_timeout_ms=5))
    slot.ensure_loaded()
    requests = 8
    results = run_together(requests, lambda i: slot.predict([image(width=10 + i)]))
    for i, rows in enumerate(results):
        assert isinstance(rows, np.ndarray), rows
        assert rows.shape == (1, 2)
        assert rows[0, 0] == 10 + i, "a request got another request's row"
    assert sum(model.batch_sizes) == requests
    assert len(model.batch_sizes) < requests, model.batch_sizes
    assert max(model.batch_sizes) <= 8


def test_no_batching_when_max_batch_size_is_one():
    model = BatchRecordingClassifier()
    slot = ModelSlot(model, policy=CallPolicy(max_batch_size=1))
    results = run_together(4, lambda i: slot.predict([image(width=10 + i)]))
    assert [rows[0, 0] for rows in results] == [10, 11, 12, 13]
    assert model.batch_sizes == [1, 1, 1, 1]


# --- Registry --------------------------------------------------------------------------------

def test_get_unknown_name_lists_configured_models():
    reg = Registry([ModelSlot(FakeClassifier()), ModelSlot(FakeDetector())])
    assert reg.get("fake_detector").task == DETECTION
    with pytest.raises(errors.ModelNotFound) as caught:
        reg.get("nope")
    assert caught.value.code == 404
    assert "nope" in caught.value.message
    assert "fake_classifier" in caught.value.message and "fake_detector" in caught.value.message
    assert caught.value.details["configured"] == ["fake_classifier", "fake_detector"]


def test_for_task_without_models_is_feature_disabled():
    reg = Registry([ModelSlot(FakeClassifier())])
    with pytest.raises(errors.FeatureDisabled) as caught:
        reg.for_task(DETECTION)
    assert caught.value.code == 403
    assert TASKS[DETECTION].enable_variable in caught.value.message
    with pytest.raises(errors.FeatureDisabled):
        reg.for_task(DETECTION, "fake_classifier")


def test_for_task_unknown_or_other_task_name_is_not_found():
    reg = Registry([ModelSlot(FakeClassifier()), ModelSlot(named(FakeClassifier(), "second")),
                    ModelSlot(FakeDetector())])
    with pytest.raises(errors.ModelNotFound) as caught:
        reg.for_task(CLASSIFICATION, "nope")
    assert caught.value.code == 404
    assert caught.value.details["configured"] == ["fake_classifier", "second"]
    with pytest.raises(errors.ModelNotFound):
        reg.for_task(CLASSIFICATION, "fake_detector")  # configured, but for the other task


def test_for_task_default_is_the_first_configured():
    first, second = ModelSlot(named(FakeClassifier(), "first")), ModelSlot(named(FakeClassifier(), "second"))
    reg = Registry([first, second, ModelSlot(FakeDetector())])
    assert reg.for_task(CLASSIFICATION, None) is first
    assert reg.for_task(CLASSIFICATION, "") is first
    assert reg.for_task(CLASSIFICATION, "second") is second
    assert reg.for_task(DETECTION).name == "fake_detector"


def test_slot_details_carry_the_models_facts_and_state():
    slot = ModelSlot(FakeClassifier())
    details = slot.details()
    assert details["name"] == "fake_classifier"
    assert details["task"] == CLASSIFICATION
    assert details["runtime"] == "unknown"
    assert details["device"] == "cpu"
    assert details["num_labels"] == 3
    assert details["input_size"] == [4, 4]
    assert details["state"] == NOT_LOADED
    slot.ensure_loaded()
    details = slot.details()
    assert details["state"] == READY
    assert "load_seconds" in details and "memory_mb" in details

    detector_details = ModelSlot(FakeDetector()).details()
    assert detector_details["task"] == DETECTION and detector_details["num_labels"] == 2
    assert detector_details["input_size"] is None


def test_registry_ready_only_when_every_slot_is_loaded():
    classifier_slot, detector_slot = ModelSlot(FakeClassifier()), ModelSlot(FakeDetector())
    reg = Registry([classifier_slot, detector_slot])
    assert not reg.ready
    classifier_slot.ensure_loaded()
    assert not reg.ready
    detector_slot.ensure_loaded()
    assert reg.ready
    assert reg.status() == {"fake_classifier": classifier_slot.status(), "fake_detector": detector_slot.status()}


def test_registry_not_ready_with_a_failed_slot():
    good, bad = ModelSlot(FakeClassifier()), ModelSlot(named(FakeClassifier(fail_load=True), "bad"))
    reg = Registry([good, bad])
    good.ensure_loaded()
    with pytest.raises(errors.ModelNotReady):
        bad.ensure_loaded()
    assert not reg.ready
    assert reg.status()["bad"]["state"] == FAILED


# --- create_model ----------------------------------------------------------------------------

def write_model_folder(models_dir, name: str, spec: dict) -> None:
    folder = models_dir / name
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"not really onnx")
    (folder / "labels.txt").write_text("dog\ncat\n", "utf-8")
    (folder / "model.json").write_text(json.dumps(spec), "utf-8")


def test_create_model_missing_folder_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError) as caught:
        create_model(CLASSIFICATION, "nope", tmp_path)
    assert "MODELS_DIR/nope/model.json" in str(caught.value)
    assert "does not exist" in str(caught.value)
    assert str(tmp_path) not in str(caught.value)


def test_create_model_folder_of_another_task_names_the_variable(tmp_path):
    write_model_folder(tmp_path, "my_detector", {
        "task": "detection", "format": "onnx", "file": "model.onnx", "labels": "labels.txt",
        "layout": "yolov8", "box_units": "pixels"})
    with pytest.raises(SpecError) as caught:
        create_model(CLASSIFICATION, "my_detector", tmp_path)
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert "IMAGE_CLASSIFICATION_MODEL" in problem
    assert "'detection'" in problem
    assert "MODELS_DIR/my_detector/model.json" in problem
    assert str(tmp_path) not in problem
