"""Lean serving: a replica that serves from the converted models (MODELS_DIR/.openvino) never
loads TensorFlow or torch. The fast tests check the parts (a serving-only install's pick of a
conversion, frameworks imported only when a load asks, the labels and preprocessing that no
longer need a framework); the slow ones convert every built-in model with `python -m
models.convert`, then serve them from the cache with the full install and with the
serving-only install (requirements-serving.txt in .venv-serving, made by ./run_tests.sh):
no framework mapped in either process, the same answers, and an honest 503 naming the command
where a conversion is missing."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from contract import FrameworksNeeded
from models.builtins import BUILTINS, CATALOG
from registry import READY, ModelSlot
from runtimes import openvino
from tests.support.fakes import FakeClassifier
from tests.support.paths import ROOT
from tests.support.servers import start_server, stop_server, wait_until
from tests.support.shared_models import photo

SERVING_PYTHON = ROOT / ".venv-serving" / "bin" / "python"
FRAMEWORK_LIBRARIES = ("libtensorflow", "libtorch", "_pywrap_tensorflow")


# --- the parts ---------------------------------------------------------------------------------

def _entry(folder: Path, key: str, age_s: float = 0) -> None:
    path = folder / f"{key}.json"
    path.write_text("{}")
    os.utime(path, (time.time() - age_s, time.time() - age_s))


def test_a_serving_only_install_serves_the_newest_conversion_this_cpu_made_first(tmp_path, caplog):
    cache = openvino.ConvertedCache(tmp_path)
    cache.folder.mkdir()
    wanted = "tiny_yolo-*-openvino2026.4.1-*-codeabcd1234-cpu11111111"
    assert cache.resolve(wanted) is None
    _entry(cache.folder, "tiny_yolo-aaaa-openvino2026.4.1-torch2.14.1-imageai3.0.3-codeabcd1234-cpu22222222")
    assert cache.resolve(wanted).endswith("cpu22222222")   # another CPU's, said in the log
    assert "converted on another kind of CPU" in caplog.text
    _entry(cache.folder, "tiny_yolo-bbbb-openvino2026.4.1-torch2.14.1-imageai3.0.3-codeabcd1234-cpu11111111", 60)
    _entry(cache.folder, "tiny_yolo-cccc-openvino2026.4.1-torch2.15.0-imageai3.0.3-codeabcd1234-cpu11111111")
    assert cache.resolve(wanted).startswith("tiny_yolo-cccc")   # this CPU's, the newest
    _entry(cache.folder, "tiny_yolo-dddd-openvino2026.4.1-torch2.14.1-imageai3.0.3-codeffffffff-cpu11111111")
    _entry(cache.folder, "yolo-eeee-openvino2026.4.1-torch2.14.1-imageai3.0.3-codeabcd1234-cpu11111111")
    assert cache.resolve(wanted).startswith("tiny_yolo-cccc")   # other code, other model: never
    exact = "tiny_yolo-bbbb-openvino2026.4.1-torch2.14.1-imageai3.0.3-codeabcd1234-cpu11111111"
    assert cache.resolve(exact) == exact


class NeedsFrameworksFirst(FakeClassifier):
    def __init__(self, imported: list):
        super().__init__()
        self.imported = imported

    def load(self):
        if not self.imported:
            raise FrameworksNeeded()
        super().load()


def test_frameworks_are_imported_only_when_a_load_asks():
    imported = []
    slot = ModelSlot(NeedsFrameworksFirst(imported), prepare=lambda: imported.append("torch, tensorflow"))
    assert slot.ensure_loaded() and slot.state == READY and imported == ["torch, tensorflow"]
    calls = []
    slot = ModelSlot(FakeClassifier(), prepare=lambda: calls.append(1))
    assert slot.ensure_loaded() and calls == []   # a load from the cache asks for nothing


@pytest.mark.skipif(importlib.util.find_spec("imageai") is None, reason="ImageAI is not installed here")
def test_the_detectors_labels_are_imageai_s_own():
    folder = Path(importlib.util.find_spec("imageai").submodule_search_locations[0]) / "Detection"
    for name in ("coco_classes.txt", "coco91_classes.txt"):
        assert (ROOT / "detectors" / "labels" / name).read_bytes() == (folder / name).read_bytes()


@pytest.mark.slow
def test_keras_preprocessing_without_keras_is_keras_own_bit_for_bit():
    import importlib

    import numpy as np

    from classifiers.keras_applications import preprocess
    from runtimes import frameworks

    frameworks.require({frameworks.TORCH, frameworks.TENSORFLOW})
    rng = np.random.default_rng(5)
    for row in BUILTINS.values():
        if row.task == "classification":
            spec = row.architecture
            batch = rng.uniform(0, 255, (2, spec["side"], spec["side"], 3)).astype(np.float32)
            keras_own = importlib.import_module(f"keras.applications.{spec['module']}").preprocess_input(batch.copy())
            assert np.array_equal(preprocess(batch.copy(), spec["preprocess"]), keras_own), row.name


# --- the services --------------------------------------------------------------------------------

PHOTOS = ("darknet/dog.jpg", "ultralytics/bus.jpg")
CLASSIFIERS = [name for name, row in BUILTINS.items() if row.task == "classification"]
DETECTORS = [name for name, row in BUILTINS.items() if row.task == "detection"]


@pytest.fixture(scope="module")
def converted(random_models_dir, tmp_path_factory):
    """A MODELS_DIR holding every built-in's weights (random, real architectures) and their
    conversions, made by `python -m models.convert all` with the full install."""
    models_dir = tmp_path_factory.mktemp("converted")
    for weights in CATALOG.values():
        link = weights.path(models_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(weights.path(random_models_dir))
    done = subprocess.run([sys.executable, "-m", "models.convert", "all"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MODELS_DIR": str(models_dir)}, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return models_dir


def serve(models_dir: Path, log: Path, python: str = sys.executable, **env):
    process, url = start_server({"IMAGE_CLASSIFICATION_ENABLED": "true", "OBJECT_DETECTION_ENABLED": "true",
                                 "IMAGE_CLASSIFICATION_MODEL": ",".join(CLASSIFIERS),
                                 "OBJECT_DETECTION_MODEL": ",".join(DETECTORS), "MODELS_DIR": str(models_dir),
                                 "MODEL_DOWNLOAD": "false", "PRELOAD_MODELS": "true", "CACHE_MAXSIZE": "0", **env},
                                log, python=python)
    wait_until(lambda: requests.get(url + "/health", timeout=2).ok, 60, "liveness")
    wait_until(lambda: all(m["state"] in ("ready", "failed")
                           for m in requests.get(url + "/ready", timeout=2).json()["models"].values()), 600, "loads")
    return process, url


def answers(url: str) -> dict:
    found = {}
    for relative in PHOTOS:
        files = {"image": (relative, photo(relative).read_bytes())}
        for name in CLASSIFIERS:
            found[name, relative] = requests.post(f"{url}/v2/classify?model={name}&top_k=5", files=files,
                                                  timeout=120).json()
        for name in DETECTORS:
            found[name, relative] = requests.post(f"{url}/v2/detect?model={name}&min_score=0.3", files=files,
                                                  timeout=120).json()
    return found


def frameworks_mapped(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({line.rsplit("/", 1)[-1] for line in maps.splitlines() if any(n in line for n in FRAMEWORK_LIBRARIES)})


@pytest.mark.slow
def test_both_installs_serve_every_built_in_from_the_cache_without_frameworks(converted, tmp_path):
    if not SERVING_PYTHON.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(".venv-serving is missing (./run_tests.sh makes it)")
        pytest.skip(".venv-serving is missing (./run_tests.sh makes it)")
    results = {}
    for install, python in (("full", sys.executable), ("serving-only", str(SERVING_PYTHON))):
        process, url = serve(converted, tmp_path / f"{install}.log", python)
        try:
            models = requests.get(url + "/models", timeout=5).json()["models"]
            assert {m["name"]: (m["state"], m["runtime"]) for m in models if m["name"] in BUILTINS} == {
                name: ("ready", "openvino") for name in CLASSIFIERS + DETECTORS}, (install, models)
            assert frameworks_mapped(process.pid) == [], install
            results[install] = answers(url)
        finally:
            stop_server(process, tmp_path / f"{install}.log")
    assert results["serving-only"] == results["full"]
    assert all("results" in body for body in results["full"].values())


@pytest.mark.slow
def test_a_serving_only_install_without_a_conversion_says_which_command_makes_it(converted, tmp_path):
    if not SERVING_PYTHON.exists():
        pytest.skip(".venv-serving is missing (./run_tests.sh makes it)")
    models_dir = tmp_path / "models"
    (models_dir / ".openvino").mkdir(parents=True)
    for entry in (converted / ".openvino").glob("mobilenet-*"):
        (models_dir / ".openvino" / entry.name).symlink_to(entry)
    process, url = start_server({"IMAGE_CLASSIFICATION_ENABLED": "true", "IMAGE_CLASSIFICATION_MODEL": "mobilenet,resnet",
                                 "MODELS_DIR": str(models_dir), "MODEL_DOWNLOAD": "false", "PRELOAD_MODELS": "true"},
                                tmp_path / "server.log", python=str(SERVING_PYTHON))
    try:
        wait_until(lambda: requests.get(url + "/ready", timeout=2).json()["models"]["resnet"]["state"] == "failed",
                   120, "resnet's load")
        ready = requests.get(url + "/ready", timeout=2)
        assert ready.status_code == 503
        models = ready.json()["models"]
        assert models["mobilenet"]["state"] == "ready"
        assert "python -m models.convert resnet" in models["resnet"]["reason"]
        answer = requests.post(url + "/classify-image?model=resnet", files={"image": ("a.jpg", photo("darknet/dog.jpg")
                                                                                      .read_bytes())}, timeout=30)
        assert answer.status_code == 503 and "python -m models.convert resnet" in answer.json()["error"]["message"]
        assert frameworks_mapped(process.pid) == [] and "Traceback" not in (tmp_path / "server.log").read_text()
    finally:
        stop_server(process, tmp_path / "server.log")
