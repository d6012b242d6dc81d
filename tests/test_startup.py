"""A quiet start: the first lines say what is served, where, with which models and what is
missing; the frameworks' own notices stay out of the log unless FRAMEWORK_LOGS=true
(serving/startup.py, runtimes/tflite.py; docs/operations.md, "Start-up and logs")."""
from __future__ import annotations

import json
import re

import pytest
import requests

from config import Settings
from serving import startup
from tests.support.paths import SHARED
from tests.support.servers import start_server, stop_server, wait_until

# A line the service writes: its own log format, or an access-log line (JSON).
OWN_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) [\w.]+: |^\{\"event\"")
NOTICES = ("absl::InitializeLog", "cpu_feature_guard", "oneDNN", "XNNPACK delegate")


def settings(**env) -> Settings:
    return Settings.from_env({k: str(v) for k, v in env.items()})


def test_the_summary_names_port_models_states_and_what_is_missing(tmp_path):
    (tmp_path / "classify").mkdir()
    (tmp_path / "classify" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5").write_bytes(b"x")
    for name, spec in {"engine": {"format": "kserve_v2", "url": "grpc://triton:8001"},
                       "local": {"format": "onnx", "file": "model.onnx"}}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.json").write_text(json.dumps({"task": "detection", **spec}))
    lines = startup.summary(settings(IMAGE_CLASSIFICATION_ENABLED="true", IMAGE_CLASSIFICATION_MODEL="mobilenet,resnet",
                                     OBJECT_DETECTION_ENABLED="false", MODELS_DIR=tmp_path, PORT=5123, MODEL_DOWNLOAD="false"))
    assert lines[0].startswith("serving http://localhost:5123/ ") and "1 serving process with 4 inference places" in lines[0]
    assert lines[1] == ("classification: mobilenet (built-in, weights present), resnet (built-in, weights missing: "
                        "fetch them with `python -m models.download resnet` (MODEL_DOWNLOAD=false: it answers 503 "
                        "until then)); the default is mobilenet")
    assert lines[2] == "detection: disabled; set OBJECT_DETECTION_ENABLED=true to enable it"
    assert lines[3] == "face: disabled; set FACE_ENABLED=true to enable it"
    assert "loads at its first request" in lines[4] and "openvino (f32)" in lines[4]
    assert "no API key required" in lines[5] and "FRAMEWORK_LOGS=true shows them" in lines[5]

    lines = startup.summary(settings(OBJECT_DETECTION_ENABLED="true", OBJECT_DETECTION_MODEL="engine,local,tiny_yolo",
                                     MODELS_DIR=tmp_path, WORKERS=3, PRELOAD_MODELS="true", API_KEYS="k1",
                                     REDIS_URL="redis://:secret@redis:6379/0"))
    assert "3 serving processes (WORKERS), each with" in lines[0]
    assert lines[1] == "classification: disabled; set IMAGE_CLASSIFICATION_ENABLED=true to enable it"
    assert lines[2].startswith("detection: engine (model folder, kserve_v2 on the engine at triton:8001), "
                               "local (model folder, onnx file run by openvino), tiny_yolo (built-in, weights "
                               "missing: fetch them with `python -m models.download tiny_yolo`, or they are "
                               "downloaded at its first load")
    assert lines[3] == "face: disabled; set FACE_ENABLED=true to enable it"
    assert lines[4].startswith("models load now, in the background")
    assert "API keys required (1 configured)" in lines[5] and "in Redis, key prefix ics" in lines[5]
    assert "secret" not in "\n".join(lines) and "k1" not in "\n".join(lines)


def test_a_face_model_from_a_package_says_so(tmp_path):
    lines = startup.summary(settings(FACE_ENABLED="true", MODELS_DIR=tmp_path, DATA_DIR=tmp_path / "data"))
    face = next(line for line in lines if line.startswith("face: "))
    assert face.startswith("face: dlib (built-in, its files from face-recognition-models==0.3.0")


def test_frameworks_are_quieted_unless_asked_and_a_deployments_own_value_wins():
    environ = {}
    startup.quiet_frameworks(settings(), environ)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "NONE"}
    environ = {"TF_CPP_MIN_LOG_LEVEL": "1"}
    startup.quiet_frameworks(settings(), environ)
    assert environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    environ = {}
    startup.quiet_frameworks(settings(FRAMEWORK_LOGS="true"), environ)
    assert environ == {}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """mobilenet (random weights: TensorFlow is imported to load it) and, where ../shared is,
    a TFLite folder (LiteRT prints its notice when the interpreter is made)."""
    from bench.random_weights import write_weights
    from tests.support.shared_models import build_folder

    folder = tmp_path_factory.mktemp("models")
    write_weights("mobilenet", folder)
    if SHARED.is_dir():
        build_folder(folder, "mobilenet_v2_quant")
    return folder


def start_log(models_dir, tmp_path, **env) -> str:
    """Start the real server with every configured model preloaded, wait until each model has
    loaded or failed, stop it; its whole log."""
    models = "mobilenet,resnet" + (",mobilenet_v2_quant" if (models_dir / "mobilenet_v2_quant").is_dir() else "")
    log_path = tmp_path / "server.log"
    process, url = start_server({"IMAGE_CLASSIFICATION_ENABLED": "true", "IMAGE_CLASSIFICATION_MODEL": models,
                                 "MODELS_DIR": str(models_dir), "PRELOAD_MODELS": "true", "MODEL_DOWNLOAD": "false",
                                 **env}, log_path)
    try:
        def settled():
            states = {m["state"] for m in requests.get(url + "/ready", timeout=2).json()["models"].values()}
            return states <= {"ready", "failed"}
        wait_until(settled, 300, "every model loaded or failed")
    finally:
        stop_server(process, log_path)
    return log_path.read_text()


@pytest.mark.slow
def test_a_start_says_what_is_served_first_and_nothing_of_the_frameworks(models_dir, tmp_path):
    log = start_log(models_dir, tmp_path)
    lines = log.splitlines()
    assert "serving http://localhost:" in lines[0]
    assert re.search(r"classification: mobilenet \(built-in, weights present\), resnet \(built-in, weights missing: "
                     r"fetch them with `python -m models.download resnet`", lines[1])
    if (models_dir / "mobilenet_v2_quant").is_dir():
        assert "mobilenet_v2_quant (model folder, tflite file run by litert)" in lines[1]
    assert lines[2].endswith("detection: disabled; set OBJECT_DETECTION_ENABLED=true to enable it")
    assert lines[3].endswith("face: disabled; set FACE_ENABLED=true to enable it")
    assert "models load now, in the background" in lines[4]
    assert "model 'mobilenet' ready in" in log and "model 'resnet' is unavailable" in log
    assert [line for line in lines if not OWN_LINE.match(line)] == []
    assert not any(notice in log for notice in NOTICES)


@pytest.mark.slow
def test_framework_logs_true_brings_the_frameworks_notices_back(models_dir, tmp_path):
    log = start_log(models_dir, tmp_path, FRAMEWORK_LOGS="true")
    foreign = [line for line in log.splitlines() if not OWN_LINE.match(line)]
    assert foreign, "no framework notice with FRAMEWORK_LOGS=true"
    if (models_dir / "mobilenet_v2_quant").is_dir():
        assert "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in foreign
    assert "frameworks' own logs shown (FRAMEWORK_LOGS=true)" in log
