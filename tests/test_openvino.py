"""OpenVINO as the runtime of the built-in models: the converted-model cache (round trip,
staleness, corruption, a read-only MODELS_DIR), the fallback to the framework, the settings,
and no usage telemetry."""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from bench.random_weights import sample_image
from config import ConfigError, Settings
from contract import InferenceOptions
from models.builtins import CATALOG
from runtimes import file_digests, frameworks
from runtimes import openvino as ov_runtime
from tests.support import imaging
from tests.support.detections import assert_same_detections, load_detector, ours
from tests.support.paths import ROOT

MOBILENET = CATALOG["mobilenet"]


def test_runtime_settings_default_to_openvino_f32_and_are_checked():
    settings = Settings.from_env({})
    assert (settings.inference_runtime, settings.inference_precision) == ("openvino", "f32")
    settings = Settings.from_env({"INFERENCE_RUNTIME": "Framework", "INFERENCE_PRECISION": "bf16"})
    assert (settings.inference_runtime, settings.inference_precision) == ("framework", "bf16")
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"INFERENCE_RUNTIME": "onnx", "INFERENCE_PRECISION": "int8"})
    assert len(info.value.problems) == 2
    assert "use one of openvino, framework" in str(info.value) and "use one of f32, bf16" in str(info.value)


def test_the_cache_key_names_model_weights_and_versions(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    a.write_bytes(b"weights one")
    b.write_bytes(b"weights two")
    key_a = ov_runtime.cache_key("mobilenet", a, "keras3", models_dir=tmp_path)
    assert key_a.startswith("mobilenet-") and f"openvino{ov_runtime.version()}" in key_a
    assert key_a.endswith(f"-cpu{ov_runtime.cpu_fingerprint()}")   # replicas on other CPUs convert for themselves
    assert key_a != ov_runtime.cache_key("mobilenet", b, "keras3", models_dir=tmp_path)
    assert key_a != ov_runtime.cache_key("mobilenet", a, "keras4", models_dir=tmp_path)
    assert key_a == ov_runtime.cache_key("mobilenet", a, "keras3", models_dir=tmp_path)
    code = tmp_path / "conversion.py"   # the code that shapes the converted network is part of the key
    code.write_text("VERSION = 1\n")
    key_code = ov_runtime.cache_key("mobilenet", a, "keras3", code=(str(code),), models_dir=tmp_path)
    assert key_code != key_a and key_code == ov_runtime.cache_key("mobilenet", a, "keras3", code=(str(code),), models_dir=tmp_path)
    code.write_text("VERSION = 2\n")
    assert ov_runtime.cache_key("mobilenet", a, "keras3", code=(str(code),), models_dir=tmp_path) != key_code


def test_recorded_answers_are_a_fixed_sample_that_round_trips_and_catches_a_difference():
    """A cache entry records at most RECORDED_VALUES values per output, at fixed positions; the
    check of a start from the cache compares those, relative to the output's largest value."""
    output = np.random.default_rng(1).normal(0, 50, (1, 255, 52, 52)).astype(np.float32)
    full, sampled = ov_runtime.Expected.of(output), ov_runtime.Expected.of(output, ov_runtime.RECORDED_VALUES)
    assert full.positions is None and full.values.size == output.size
    assert sampled.values.size == ov_runtime.RECORDED_VALUES == len(set(sampled.positions.tolist()))
    recorded = ov_runtime.Expected.from_json(json.loads(json.dumps(sampled.to_json())))
    recorded.check("yolo", output)
    recorded.check("yolo", output * np.float32(1 + 1e-6))   # float reordering passes
    moved = output.copy()
    moved.ravel()[recorded.positions[100]] += 0.01 * recorded.scale
    for wrong, words in ((moved, "differs from the framework's by 0.01"), (output[:, :128], "has shape")):
        with pytest.raises(ov_runtime.Unusable) as info:
            recorded.check("yolo", wrong)
        assert words in str(info.value)
    probabilities = ov_runtime.Expected.of(np.full((2, 1000), 1e-3, np.float32))
    assert probabilities.scale == 1.0   # bounded answers are compared as they are


# --- the classifier on OpenVINO, with real architectures and random weights ----------------


@pytest.fixture
def models_dir(tmp_path, random_models_dir):
    """A MODELS_DIR of its own (its own .openvino cache) holding MobileNetV2's weight file."""
    target = MOBILENET.path(tmp_path / "models")
    target.parent.mkdir(parents=True)
    target.symlink_to(MOBILENET.path(random_models_dir))
    return tmp_path / "models"


def load(models_dir, runtime="openvino", precision="f32", name="mobilenet"):
    from registry import create_model

    options = InferenceOptions(runtime="openvino" if runtime == "openvino" else "framework", precision=precision)
    model = create_model("classification", name, models_dir, download=False, options=options)
    frameworks.require(set(model.frameworks), options)
    model.load()
    return model


def images():
    return [sample_image(224, 224, seed) for seed in (11, 12, 13)]


def keras_reference(weights_path) -> np.ndarray:
    """preprocess_input → Keras model, the reference every runtime must equal."""
    frameworks.require({frameworks.TORCH, frameworks.TENSORFLOW})
    from keras.applications import mobilenet_v2

    model = mobilenet_v2.MobileNetV2(weights=str(weights_path))
    batch = np.stack([np.asarray(img, dtype=np.float32) for img in images()])
    return np.asarray(model(mobilenet_v2.preprocess_input(batch), training=False))


@pytest.fixture(scope="module")
def reference(random_models_dir):
    return keras_reference(MOBILENET.path(random_models_dir))


def entry_files(models_dir):
    """The cache entries' files (not the digest memo beside them)."""
    return sorted(p.name for p in (models_dir / ov_runtime.CACHE_FOLDER).iterdir()
                  if p.name != file_digests.MEMO_NAME)


@pytest.mark.slow
def test_cache_round_trip_serves_the_same_answers(models_dir, reference, caplog):
    caplog.set_level(logging.INFO, logger="runtimes.openvino")
    first = load(models_dir)
    assert (first.runtime, first.device, first.describe()["precision"]) == ("openvino", "cpu", "f32")
    files = entry_files(models_dir)
    assert [f.rsplit(".", 1)[1] for f in files] == ["bin", "json", "xml"]
    assert all(f.startswith("mobilenet-") for f in files)
    assert "saved to MODELS_DIR/.openvino" in caplog.text and str(models_dir) not in caplog.text
    caplog.clear()
    second = load(models_dir)
    assert "read from the cache" in caplog.text and "saved" not in caplog.text
    assert entry_files(models_dir) == files
    np.testing.assert_allclose(first.predict(images()), reference, atol=1e-4)
    np.testing.assert_allclose(second.predict(images()), reference, atol=1e-4)


@pytest.mark.slow
def test_a_start_from_the_cache_builds_no_keras_model(models_dir, reference, monkeypatch, caplog):
    """The entry records Keras' answer on the probe: a start from it compiles the cached network
    and checks it against that answer, without building the Keras model (the slow part)."""
    from classifiers.keras_applications import KerasApplicationClassifier

    built = []
    build = KerasApplicationClassifier.build
    monkeypatch.setattr(KerasApplicationClassifier, "build", lambda self, path: built.append(path) or build(self, path))
    load(models_dir)
    assert len(built) == 1
    caplog.set_level(logging.INFO, logger="runtimes.openvino")
    model = load(models_dir)
    assert "read from the cache" in caplog.text and len(built) == 1
    assert (model.runtime, model.describe()["precision"]) == ("openvino", "f32")
    np.testing.assert_allclose(model.predict(images()), reference, atol=1e-4)


@pytest.mark.slow
def test_an_entry_that_records_no_answers_is_converted_again(models_dir, reference, caplog):
    """Entries written before answers were recorded cannot be checked without Keras: they are
    converted again, once."""
    load(models_dir)
    manifest_path = next(models_dir / ov_runtime.CACHE_FOLDER / name
                         for name in entry_files(models_dir) if name.endswith(".json"))
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({"xml": manifest["xml"], "bin": manifest["bin"]}))
    caplog.set_level(logging.INFO, logger="runtimes.openvino")
    model = load(models_dir)
    assert "(it records no reference answers); converting again" in caplog.text and "saved to" in caplog.text
    np.testing.assert_allclose(model.predict(images()), reference, atol=1e-4)
    assert "expected" in json.loads(manifest_path.read_text())


@pytest.mark.slow
def test_the_compiled_network_owns_its_weights(models_dir, reference):
    """convert_model shares an in-memory framework model's weight buffers by default; once the
    Keras model was dropped after loading, the compiled network read whatever reused that
    memory (seen as another top-1 on a later request, only in a long test run). Freed,
    collected and overwritten: the answers must not move."""
    import gc

    model = load(models_dir)   # a fresh MODELS_DIR: converted in memory, Keras model dropped
    assert model.runtime == "openvino"
    for _ in range(3):
        gc.collect()
        filler = [np.random.default_rng(i).random(2_000_000, dtype=np.float32) for i in range(40)]
        np.testing.assert_allclose(model.predict(images()), reference, atol=1e-4)
        del filler


@pytest.mark.slow
def test_other_weights_are_another_entry_never_the_stale_one(models_dir, reference, tmp_path):
    load(models_dir)
    old_files = entry_files(models_dir)
    # Other valid weights for the same architecture: every kernel of the last layer halved.
    frameworks.require({frameworks.TORCH, frameworks.TENSORFLOW})
    import h5py
    from keras.applications import mobilenet_v2
    from keras.src.legacy.saving import legacy_h5_format

    model = mobilenet_v2.MobileNetV2(weights=str(MOBILENET.path(models_dir)))
    head = model.get_layer("predictions")
    head.kernel.assign(head.kernel.numpy() * 0.5)
    weights = MOBILENET.path(models_dir)
    weights.unlink()
    with h5py.File(weights, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    new = load(models_dir)
    assert new.runtime == "openvino"
    assert len(entry_files(models_dir)) == 2 * len(old_files)
    answer = new.predict(images())
    np.testing.assert_allclose(answer, keras_reference(weights), atol=1e-4)
    assert np.abs(answer - reference).max() > 1e-3  # not the answers of the stale entry


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate bin", "truncate xml", "garbage manifest", "flip bin bytes",
                                    "consistent but wrong", "altered answers"])
def test_a_damaged_entry_is_rebuilt_never_served(damage, models_dir, reference, caplog):
    load(models_dir)
    paths = {p.suffix: p for p in (models_dir / ov_runtime.CACHE_FOLDER / name for name in entry_files(models_dir))}
    if damage.startswith("truncate"):
        path = paths["." + damage.split()[1]]
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage manifest":
        paths[".json"].write_text("{not json")
    elif damage == "altered answers":   # the recorded answers no longer match their checksum
        manifest = json.loads(paths[".json"].read_text())
        manifest["expected"][0]["values"][0] += 0.5
        paths[".json"].write_text(json.dumps(manifest))
    else:
        data = bytearray(paths[".bin"].read_bytes())
        data[len(data) // 2: len(data) // 2 + 4096] = bytes(4096)  # zero some weights
        paths[".bin"].write_bytes(bytes(data))
        if damage == "consistent but wrong":  # the manifest matches: only the probe check sees it
            manifest = json.loads(paths[".json"].read_text())
            manifest["bin"] = {"size": len(data), "sha256": file_digests.file_sha256(paths[".bin"])}
            paths[".json"].write_text(json.dumps(manifest))
    caplog.set_level(logging.INFO, logger="runtimes.openvino")
    model = load(models_dir)
    assert model.runtime == "openvino"
    assert "converting again" in caplog.text and "saved to MODELS_DIR/.openvino" in caplog.text
    np.testing.assert_allclose(model.predict(images()), reference, atol=1e-4)
    caplog.clear()
    load(models_dir)  # the rebuilt entry is whole again
    assert "read from the cache" in caplog.text and "converting again" not in caplog.text


@pytest.mark.slow
def test_starts_from_the_cache_remember_digests_and_still_see_a_damaged_network(models_dir, reference,
                                                                               monkeypatch, caplog):
    """The digests of the weights and of the cached network are remembered by file identity
    (runtimes.file_digests): once remembered, a start from the cache reads neither file to hash
    it. A network damaged after that has another identity: it is hashed, found not to match its
    manifest and converted again."""
    monkeypatch.setattr(file_digests, "RACY_SECONDS", 0.0)   # the test's files are all seconds old
    hashed = []
    real = file_digests.file_sha256
    monkeypatch.setattr(file_digests, "file_sha256", lambda path: hashed.append(Path(path).suffix) or real(path))
    load(models_dir)   # converts, hashing the weights and the new entry's files
    load(models_dir)   # the entry's files, renamed into place, are hashed once more where they lie
    hashed.clear()
    load(models_dir)
    assert hashed == []
    bin_path = next(models_dir / ov_runtime.CACHE_FOLDER / n for n in entry_files(models_dir) if n.endswith(".bin"))
    data = bytearray(bin_path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = bytes(4096)   # same size, other weights
    bin_path.write_bytes(bytes(data))
    caplog.set_level(logging.INFO, logger="runtimes.openvino")
    model = load(models_dir)
    assert ".bin" in hashed and ".h5" not in hashed
    assert "does not match the manifest" in caplog.text and "saved to MODELS_DIR/.openvino" in caplog.text
    np.testing.assert_allclose(model.predict(images()), reference, atol=1e-4)


def test_writing_an_entry_removes_the_model_s_entries_unused_for_a_week(tmp_path, caplog):
    """Each release or weights file makes new entries: writing one removes the same model's
    others not used (served from or written) for UNUSED_DAYS, and staging files a killed write
    left. Other models' entries and recent ones stay."""
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([1, 4], np.float32)
    network = ov.Model([ops.relu(x)], [x])
    cache = ov_runtime.ConvertedCache(tmp_path)
    expected = [ov_runtime.Expected.of(np.zeros((1, 4)))]
    week_and_a_day_ago = time.time() - (ov_runtime.ConvertedCache.UNUSED_DAYS + 1) * 86400
    for key in ("yolo-old-release", "yolo-read-lately", "yolo-other-replica", "tiny_yolo-old-release"):
        assert cache.write(key, network, expected, {})
    for key in ("yolo-old-release", "yolo-read-lately", "tiny_yolo-old-release"):
        for path in cache.paths(key).values():
            os.utime(path, (week_and_a_day_ago, week_and_a_day_ago))
    cache.mark_used("yolo-read-lately")   # a start served from it
    crashed = cache.folder / ".tmp-crashed"
    crashed.mkdir()
    (crashed / "model.bin").write_bytes(b"half")
    killed_memo = cache.folder / (file_digests.STAGING_PREFIX + "killed")
    killed_memo.write_text("{")
    for path in (crashed, killed_memo):
        os.utime(path, (week_and_a_day_ago, week_and_a_day_ago))
    caplog.set_level(logging.INFO, logger="runtimes.openvino")
    assert cache.write("yolo-new-release", network, expected, {})
    left = sorted({p.name.rsplit(".", 1)[0] for p in cache.folder.iterdir() if p.name != file_digests.MEMO_NAME})
    assert left == ["tiny_yolo-old-release", "yolo-new-release", "yolo-other-replica", "yolo-read-lately"]
    assert "yolo-old-release removed from the cache (unused for 7 days)" in caplog.text
    assert cache.read("yolo-new-release") is not None
    # A process serving from an entry marks it again and again while it runs.
    manifest = cache.paths("yolo-read-lately")["json"]
    os.utime(manifest, (week_and_a_day_ago, week_and_a_day_ago))
    ov_runtime.mark_serving()
    assert time.time() - manifest.stat().st_mtime < 60


@pytest.mark.slow
def test_a_read_only_models_dir_converts_in_memory_and_says_so_once(models_dir, reference, monkeypatch, caplog):
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    # The tests may run as root, whom file modes do not stop: the folder refuses writes instead.
    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    monkeypatch.setattr(tempfile, "mkstemp", read_only)   # the digest memo's
    monkeypatch.setattr(ov_runtime.ConvertedCache, "_warned", set())
    caplog.set_level(logging.INFO, logger="runtimes.openvino")
    answers = [load(models_dir).predict(images()) for _ in range(2)]
    for answer in answers:
        np.testing.assert_allclose(answer, reference, atol=1e-4)
    warnings = [r for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(warnings) == 1 and "PermissionError" in warnings[0].getMessage()
    assert str(models_dir) not in caplog.text
    assert not (models_dir / ov_runtime.CACHE_FOLDER).exists() or entry_files(models_dir) == []


def fallback_app(models_dir):
    from app import create_app

    settings = Settings(classification_enabled=True, models_dir=models_dir, model_download=False)
    return create_app(settings).test_client()


def service_warnings(caplog) -> list[str]:
    """The service's own warnings (TensorFlow's retracing notices depend on the tests run before)."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name != "tensorflow"]


def assert_served_by_tensorflow(client, reference, reason_part, caplog):
    for img, expected in zip(images(), reference):
        response = client.post("/v2/classify?top_k=1", data={"image": (io.BytesIO(imaging.encode(img, "PNG")), "x.png")},
                               content_type="multipart/form-data")
        assert response.status_code == 200, response.get_data(as_text=True)
        top = response.get_json()["results"][0]["predictions"][0]
        assert top["score"] == pytest.approx(float(expected.max()), abs=1e-4)
    details = client.get("/models/mobilenet").get_json()
    assert (details["state"], details["runtime"], details["device"]) == ("ready", "tensorflow", "cpu")
    assert reason_part in details["runtime_reason"]
    lines = service_warnings(caplog)
    assert lines == [f"model 'mobilenet' runs on TensorFlow instead of OpenVINO: {details['runtime_reason']}"]
    for text in (str(details), " ".join(lines)):
        assert "corrupt" not in text and "delete" not in text and "models.download" not in text


@pytest.mark.slow
def test_openvino_missing_falls_back_to_tensorflow_with_one_clear_line(models_dir, reference, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    caplog.set_level(logging.WARNING)
    assert_served_by_tensorflow(fallback_app(models_dir), reference, "openvino could not be imported", caplog)


@pytest.mark.slow
def test_a_failed_conversion_falls_back_and_never_blames_the_weights(models_dir, reference, monkeypatch, caplog):
    openvino = ov_runtime.load_module()

    def broken(*args, **kwargs):
        raise RuntimeError("Check 'x' failed at /somewhere/private/frontend.cpp")

    monkeypatch.setattr(openvino, "convert_model", broken)
    caplog.set_level(logging.WARNING)
    client = fallback_app(models_dir)
    assert_served_by_tensorflow(client, reference, "the conversion to OpenVINO failed (RuntimeError)", caplog)
    assert "/somewhere" not in caplog.text and "/somewhere" not in str(client.get("/models/mobilenet").get_json())


@pytest.mark.slow
def test_tensorflow_runtime_and_a_visible_gpu_keep_the_framework(models_dir, reference, monkeypatch):
    model = load(models_dir, runtime="framework")
    assert (model.runtime, "runtime_reason" in model.describe()) == ("tensorflow", False)
    assert not (models_dir / ov_runtime.CACHE_FOLDER).exists()
    np.testing.assert_allclose(model.predict(images()), reference, atol=1e-4)
    from classifiers import keras_applications

    monkeypatch.setattr(keras_applications, "_tensorflow_device", lambda: "cuda:0")
    monkeypatch.setattr(frameworks, "gpu_possible", lambda: True)   # a host with NVIDIA's driver
    model = load(models_dir)
    assert (model.runtime, model.device) == ("tensorflow", "cuda:0")
    assert "GPU" in model.describe()["runtime_reason"]


@pytest.mark.slow
def test_bf16_is_opt_in_and_reported(models_dir):
    model = load(models_dir, precision="bf16")
    capabilities = ov_runtime.load_module().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert model.describe()["precision"] == ("bf16" if "BF16" in capabilities else "f32")
    probabilities = model.predict(images())
    assert probabilities.shape == (3, 1000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-2)


@pytest.mark.slow
def test_conversion_sends_no_telemetry(tmp_path):
    """OpenVINO's converter reports usage to Google Analytics (and writes ~/intel) unless it is
    told not to; the service's conversions leave HOME untouched."""
    home = tmp_path / "home"
    home.mkdir()
    script = (
        "import torch\n"
        "from runtimes import openvino as r\n"
        "ov = r.load_module()\n"
        "ov.convert_model(torch.nn.Linear(3, 2), example_input=torch.zeros(1, 3))\n"
        "import sys; print('openvino_telemetry' in sys.modules and sys.modules['openvino_telemetry'] is not None)\n")
    env = {**os.environ, "HOME": str(home), "CI": "false"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert list(home.iterdir()) == []


# A fresh process loads the detector from MODELS_DIR, predicts once and prints what it imported.
_SERVE_FROM_THE_CACHE = """
import json, sys
from pathlib import Path
from bench.random_weights import sample_image
from contract import InferenceOptions
from registry import create_model
detector = create_model("detection", "tiny_yolo", Path(sys.argv[1]), download=False, options=InferenceOptions())
detector.load()
found = detector.predict([sample_image(640, 480, 6)], 0.3)[0]
print(json.dumps({"runtime": detector.runtime, "found": [[d.label, d.score, list(d.box)] for d in found],
                  "frameworks": sorted(m for m in sys.modules
                                       if m.split(".")[0] in ("torch", "torchvision", "imageai", "tensorflow", "keras"))}))
"""


@pytest.mark.slow
def test_a_yolo_start_from_the_cache_serves_without_importing_a_framework(tmp_path):
    """The lean replica: YOLO's converted network read from the cache, checked on its probe and
    serving a request (detection layers, NMS and rescaling in numpy) without torch, torchvision
    or imageai (nor TensorFlow) in sys.modules; its detections are those of the start that
    converted."""
    from bench.random_weights import write_weights

    write_weights("tiny_yolo", tmp_path)
    converted = load_detector("tiny_yolo", "openvino", tmp_path)   # fills the cache (torch converts)
    entries = sorted((tmp_path / ".openvino").glob("tiny_yolo-*.json"))
    assert len(entries) == 1
    env = {**os.environ, "CI": "false"}
    result = subprocess.run([sys.executable, "-c", _SERVE_FROM_THE_CACHE, str(tmp_path)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert (served["runtime"], served["frameworks"]) == ("openvino", [])
    assert sorted((tmp_path / ".openvino").glob("tiny_yolo-*.json")) == entries   # read, not converted again
    assert assert_same_detections([tuple(d) for d in served["found"]], ours(converted, sample_image(640, 480, 6), 0.3)) > 100


def break_conversion(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("Check 'x' failed at /somewhere/private/frontend.cpp")

    monkeypatch.setattr(ov_runtime.load_module(), "convert_model", broken)


@pytest.mark.slow
@pytest.mark.parametrize("fault, reason", [
    ("missing", "openvino could not be imported (ModuleNotFoundError)"),
    ("conversion", "the conversion to OpenVINO failed (RuntimeError)")])
def test_a_detector_falls_back_to_torch_with_imageai_s_detections(fault, reason, random_models_dir, tmp_path,
                                                                  monkeypatch, caplog):
    """openvino not importable, or its conversion failing: the detector runs on torch, says so
    in one log line and in /models/<name>, and answers exactly as ImageAI's torch path."""
    from app import create_app

    weights = CATALOG["tiny_yolo"]
    target = weights.path(tmp_path)
    target.parent.mkdir(parents=True)
    target.symlink_to(weights.path(random_models_dir))
    reference = load_detector("tiny_yolo", "framework", tmp_path)
    if fault == "missing":
        monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    else:
        break_conversion(monkeypatch)
    caplog.set_level(logging.WARNING)
    settings = Settings(detection_enabled=True, detection_models=("tiny_yolo",), models_dir=tmp_path,
                        model_download=False)
    client = create_app(settings).test_client()
    image = sample_image(640, 480, 6)
    response = client.post("/v2/detect?min_score=0.3", content_type="multipart/form-data",
                           data={"image": (io.BytesIO(imaging.encode(image, "PNG")), "x.png")})
    assert response.status_code == 200, response.get_data(as_text=True)
    found = [(d["label"], d["score"], [d["box"][k] for k in ("x1", "y1", "x2", "y2")])
             for d in response.get_json()["results"][0]["detections"]]
    expected = ours(reference, image, 0.3)
    assert len(expected) > 500
    assert_same_detections(found, expected)
    details = client.get("/models/tiny_yolo").get_json()
    assert (details["state"], details["runtime"], details["device"], details["runtime_reason"]) == \
           ("ready", "torch", "cpu", reason)
    lines = service_warnings(caplog)
    assert lines == [f"model 'tiny_yolo' runs on torch instead of OpenVINO: {reason}"]
    for text in (str(details), " ".join(lines)):
        assert "corrupt" not in text and "models.download" not in text and "/somewhere" not in text


def users_folder(models_dir, name, runtime):
    from tests.support.shared_models import build_folder

    folder = build_folder(models_dir, name)
    spec = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**spec, "runtime": runtime}))
    return folder


def test_users_files_default_to_the_runtime_measured_fastest_with_the_same_answers(tmp_path, monkeypatch):
    """No "runtime" in model.json: ONNX on OpenVINO (faster here, same detections; bench.folders),
    quantized TFLite on LiteRT; ONNX Runtime keeps ONNX where it can use a GPU."""
    import onnxruntime

    from models.folder_spec import load_spec
    from tests.support.shared_models import build_folder

    assert load_spec(build_folder(tmp_path, "yolov5n_onnx")).runtime == "openvino"
    assert load_spec(build_folder(tmp_path, "mobilenet_v2_quant")).runtime == "litert"
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert load_spec(tmp_path / "yolov5n_onnx").runtime == "onnxruntime"


def detections_via_http(client, model, image_path):
    response = client.post(f"/v2/detect?model={model}&min_score=0.25", content_type="multipart/form-data",
                           data={"image": (io.BytesIO(image_path.read_bytes()), "x.jpg")})
    assert response.status_code == 200, response.get_data(as_text=True)
    return [(d["label"], d["score"], [d["box"][k] for k in ("x1", "y1", "x2", "y2")])
            for d in response.get_json()["results"][0]["detections"]]


@pytest.mark.slow
def test_a_users_onnx_model_on_openvino_answers_as_onnx_runtime(tmp_path):
    """model.json "runtime": "openvino" runs the file on OpenVINO, checked against ONNX Runtime
    at load; the detections on the sample photos are ONNX Runtime's."""
    from app import create_app
    from tests.support.detections import PHOTOS

    users_folder(tmp_path / "a", "yolov5n_onnx", "openvino")
    users_folder(tmp_path / "b", "yolov5n_onnx", "onnxruntime")
    on = {runtime: create_app(Settings(detection_enabled=True, detection_models=("yolov5n_onnx",),
                                       models_dir=tmp_path / sub)).test_client()
          for runtime, sub in (("openvino", "a"), ("onnxruntime", "b"))}
    compared = 0
    for path in PHOTOS:
        compared += assert_same_detections(detections_via_http(on["openvino"], "yolov5n_onnx", path),
                                           detections_via_http(on["onnxruntime"], "yolov5n_onnx", path))
    assert compared > 5
    for runtime, client in on.items():
        details = client.get("/models/yolov5n_onnx").get_json()
        assert (details["runtime"], "runtime_reason" in details) == (runtime, False)


@pytest.mark.slow
def test_a_users_quantized_model_openvino_answers_differently_stays_on_litert(tmp_path, caplog):
    """OpenVINO's integer kernels round differently from LiteRT's on the quantized MobileNetV2
    (measured: probabilities 12/256 apart on the probe, another top-5 on some photos): the load
    check keeps the model on LiteRT, in one log line and in /models."""
    from app import create_app

    users_folder(tmp_path, "mobilenet_v2_quant", "openvino")
    caplog.set_level(logging.WARNING)
    client = create_app(Settings(classification_enabled=True, classification_models=("mobilenet_v2_quant",),
                                 models_dir=tmp_path)).test_client()
    assert client.get("/models/mobilenet_v2_quant").get_json()["runtime"] == "openvino"  # configured, not loaded
    response = client.post("/v2/classify?top_k=1", content_type="multipart/form-data",
                           data={"image": (io.BytesIO(imaging.jpeg(size=(224, 224))), "x.jpg")})
    assert response.status_code == 200
    details = client.get("/models/mobilenet_v2_quant").get_json()
    assert details["runtime"] == "litert"
    assert details["runtime_reason"].startswith("OpenVINO's answer differs from the framework's")
    # (The folder's ImageNet labels name two classes "crane": model.json's check says so once.)
    lines = [line for line in service_warnings(caplog) if "repeats labels" not in line]
    assert lines == [f"model 'mobilenet_v2_quant' runs on litert instead of OpenVINO: {details['runtime_reason']}"]
