"""OPENVINO_DEVICE (runtimes.openvino_devices, runtimes.openvino): checked at start against the
devices OpenVINO sees on this host, carried by InferenceOptions to every compile, part of the
converted-model cache key, and shown by /models. This host has a CPU only: CPU and AUTO (and
AUTO:CPU, MULTI:CPU, HETERO:CPU) compile and run here; GPU and NPU hosts are described to the
rules by the devices OpenVINO would list there (docs/neighbours.md says what that leaves
untested)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from config import ConfigError, Settings
from contract import InferenceOptions
from runtimes import file_digests, openvino_devices
from runtimes import openvino as ov_runtime
from tests.support.paths import ROOT
from tests.support.servers import free_port

DEVICES_HERE = ["CPU", "AUTO", "AUTO:CPU", "MULTI:CPU", "HETERO:CPU"]


# --- the rules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("device, problem", [
    ("CPU", None), ("GPU", None), ("GPU.1", None), ("NPU", None), ("AUTO", None), ("AUTO:GPU,CPU", None),
    ("AUTO:-CPU", None), ("MULTI:GPU,CPU", None), ("HETERO:GPU,CPU", None),
    ("MULTI", "needs the devices"), ("HETERO", "needs the devices"), ("FOO:CPU", "not one of OpenVINO's modes"),
    ("BATCH:GPU(4)", "not one of OpenVINO's modes"), ("BATCH", "not a device name"), ("AUTO:", "not a device name"),
    ("AUTO:AUTO", "not a device name"), ("MULTI:-CPU", "not a device name"), ("GPU 0", "not a device name"),
    ("AUTO:GPU,,CPU", "not a device name"), ("AUTO:CPU,CPU", "twice"), ("AUTO:CPU,-CPU", "twice"),
])
def test_what_openvino_takes(device, problem):
    found = openvino_devices.syntax_problem(device)
    assert (found is None) if problem is None else (problem in found), found


@pytest.mark.parametrize("device, available, missing", [
    ("GPU", ["CPU", "GPU"], None), ("GPU.0", ["CPU", "GPU"], None), ("GPU", ["CPU", "GPU.0", "GPU.1"], None),
    ("GPU.1", ["CPU", "GPU.0", "GPU.1"], None), ("AUTO:GPU,CPU", ["CPU", "GPU"], None), ("AUTO", ["CPU"], None),
    ("AUTO:-CPU", ["CPU", "GPU"], None), ("NPU", ["CPU", "NPU"], None), ("HETERO:GPU.1,CPU", ["CPU", "GPU.1"], None),
    ("GPU", ["CPU"], "OpenVINO sees no GPU"), ("GPU.1", ["CPU", "GPU"], "no GPU.1"), ("NPU", ["CPU", "GPU"], "no NPU"),
    ("AUTO:GPU,CPU", ["CPU"], "no GPU"), ("MULTI:GPU,NPU", ["CPU"], "no GPU or NPU"),
    ("AUTO:-CPU", ["CPU"], "leaves no device"), ("AUTO", [], "leaves no device"),
])
def test_a_device_this_host_lacks_is_named_with_those_it_has(device, available, missing):
    problem = openvino_devices.availability_problem(device, available, {"CPU": "AMD EPYC"})
    if missing is None:
        assert problem is None
    else:
        assert missing in problem and "the devices it sees:" in problem
        assert ("CPU (AMD EPYC)" in problem) == ("CPU" in available)


def test_the_cpu_alone_keeps_its_settings_other_devices_get_them_for_their_cpu():
    assert openvino_devices.compile_config("CPU", "f32", 2) == {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}
    assert openvino_devices.compile_config("GPU", "f32", 2) == {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
        "DEVICE_PROPERTIES": {"CPU": {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}}}


def test_cache_tags_are_file_names_one_for_each_device():
    devices = ["CPU", "GPU", "GPU.0", "GPU.1", "NPU", "AUTO", "AUTO:GPU,CPU", "AUTO:CPU,GPU", "AUTO:-CPU",
               "AUTO:CPU", "MULTI:GPU,CPU", "HETERO:GPU,CPU"]
    tags = [openvino_devices.cache_tag(d) for d in devices]
    assert len(set(tags)) == len(tags) and all(t.replace("+", "").replace("_", "").replace(".", "").isalnum()
                                               for t in tags)
    assert tags[0] == "cpu" and ov_runtime.entry_key("mobilenet-abc", "AUTO:GPU,CPU") == "mobilenet-abc-onauto_gpu+cpu"


# --- at start ----------------------------------------------------------------------------------

def test_the_default_cpu_is_taken_without_importing_openvino():
    code = ("import sys; from config import Settings; s = Settings.from_env({}); "
            "print(s.openvino_device, s.inference_options.device, 'openvino' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["CPU", "CPU", "False"]


@pytest.mark.parametrize("raw, device", [("auto", "AUTO"), ("AUTO:CPU", "AUTO:CPU"), ("multi:cpu", "MULTI:CPU"),
                                         ("HETERO:CPU", "HETERO:CPU"), (" cpu ", "CPU")])
def test_devices_this_host_has_are_taken(raw, device):
    settings = Settings.from_env({"OPENVINO_DEVICE": raw})
    assert settings.openvino_device == settings.inference_options.device == device


def test_a_device_this_host_lacks_stops_the_configuration_listing_what_it_has():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"OPENVINO_DEVICE": "GPU", "INFERENCE_PRECISION": "f64"})
    assert len(info.value.problems) == 2
    problem = next(p for p in info.value.problems if p.startswith("OPENVINO_DEVICE"))
    full_name = ov_runtime.core().get_property("CPU", "FULL_DEVICE_NAME")
    assert "OpenVINO sees no GPU on this host" in problem and f"CPU ({full_name})" in problem
    assert ov_runtime.core().available_devices == ["CPU"]   # what this host is known to have


def test_python_app_py_with_a_wrong_device_exits_at_once_with_the_list(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
           "OPENVINO_DEVICE": "NPU", "PORT": str(free_port()), "MODELS_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "OPENVINO_DEVICE='NPU': OpenVINO sees no NPU on this host; the devices it sees: CPU (" in result.stderr


# --- compiled on the device, cached per device -------------------------------------------------

def tiny_conversion(models_dir, converted: list):
    """A conversion of a small network (y = relu(x @ W + b)) with the framework's answer
    computed in numpy, as the built-in families give theirs."""
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(3)
    weights, bias = rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    probe = rng.normal(size=(1, 8)).astype(np.float32)

    def convert():
        converted.append(1)
        x = ops.parameter([1, 8], np.float32, name="x")
        return ov.Model([ops.relu(ops.add(ops.matmul(x, ops.constant(weights), False, False), ops.constant(bias)))],
                        [x], "tiny")

    weights_file = models_dir / "tiny.bin"
    weights_file.write_bytes(weights.tobytes() + bias.tobytes())
    return ov_runtime.Conversion(
        key=ov_runtime.cache_key("tiny", weights_file, "numpy", models_dir=models_dir),
        probe=lambda network: network(probe),
        source=lambda: ov_runtime.Source(expected=[np.maximum(probe @ weights + bias, 0)], convert=convert),
        input_shapes=[[1, 8]])


@pytest.mark.parametrize("device", DEVICES_HERE)
def test_each_device_here_compiles_checks_caches_and_reports_the_cpu(tmp_path, device):
    converted = []
    options = InferenceOptions(device=device, intra_op_threads=1)
    first = ov_runtime.compile_network(tiny_conversion(tmp_path, converted), tmp_path, options)
    again = ov_runtime.compile_network(tiny_conversion(tmp_path, converted), tmp_path, options)
    assert converted == [1]   # the second came from the cache entry of this device
    assert first.devices == again.devices == "cpu"   # EXECUTION_DEVICES: AUTO chose the CPU, the only device
    assert first.precision == "f32"
    entries = {p.name.rsplit(".", 1)[0] for p in (tmp_path / ov_runtime.CACHE_FOLDER).iterdir()
               if p.name != file_digests.MEMO_NAME}
    assert entries == {ov_runtime.entry_key(tiny_conversion(tmp_path, []).key, device)}
    assert entries.pop().endswith("-on" + openvino_devices.cache_tag(device))


def test_another_device_is_another_cache_entry(tmp_path):
    converted = []
    for device in ("CPU", "AUTO", "CPU"):
        ov_runtime.compile_network(tiny_conversion(tmp_path, converted), tmp_path, InferenceOptions(device=device))
    assert converted == [1, 1]   # CPU, then AUTO converted for itself, then CPU from its own entry
    names = sorted(p.name for p in (tmp_path / ov_runtime.CACHE_FOLDER).glob("*.json"))
    assert [n.rsplit("-", 1)[1] for n in names] == ["onauto.json", "oncpu.json"]


def test_a_device_openvino_cannot_open_is_a_reason_not_a_crash(tmp_path):
    """Past the start-up check (a host that lost its GPU since): the compile fails, Unusable
    or OpenVINO's own error, which runtimes.openvino.attempt turns into the framework's run."""
    with pytest.raises(Exception) as info:
        ov_runtime.compile_network(tiny_conversion(tmp_path, []), tmp_path, InferenceOptions(device="GPU"))
    assert isinstance(info.value, (ov_runtime.Unusable, RuntimeError))
    network, reason = ov_runtime.attempt("tiny", "numpy", lambda: ov_runtime.compile_network(
        tiny_conversion(tmp_path, []), tmp_path, InferenceOptions(device="GPU")))
    assert network is None and reason


# --- the real models: a built-in network and a user's file on AUTO -----------------------------

@pytest.fixture(scope="module")
def mobilenet_dir(tmp_path_factory):
    """A MODELS_DIR holding MobileNetV2's official weight file: the real architecture, random weights."""
    from bench.random_weights import write_weights

    models_dir = tmp_path_factory.mktemp("models")
    write_weights("mobilenet", models_dir)
    return models_dir


@pytest.mark.slow
def test_a_builtin_model_on_auto_runs_where_openvino_chooses(mobilenet_dir):
    """OPENVINO_DEVICE=AUTO on this CPU-only host: OpenVINO chooses the CPU (EXECUTION_DEVICES,
    /models' `device`), the answers are the CPU's, and the cache entry is AUTO's own."""
    from bench.random_weights import sample_image
    from registry import create_model
    from runtimes import frameworks

    answers, models = {}, {}
    for device in ("AUTO", "CPU"):
        options = InferenceOptions(device=device)
        models[device] = model = create_model("classification", "mobilenet", mobilenet_dir, download=False,
                                              options=options)
        frameworks.require(set(model.frameworks), options)
        model.load()
        answers[device] = model.predict([sample_image(224, 224, seed) for seed in (11, 12)])
    info = models["AUTO"].describe()
    assert (models["AUTO"].runtime, models["AUTO"].device, info["openvino_device"], info["precision"]) == \
        ("openvino", "cpu", "AUTO", "f32")
    assert models["CPU"].describe()["openvino_device"] == "CPU"
    np.testing.assert_allclose(answers["AUTO"], answers["CPU"], atol=1e-5)
    entries = sorted(p.name for p in (mobilenet_dir / ov_runtime.CACHE_FOLDER).glob("mobilenet-*.json"))
    assert [name.rsplit("-", 1)[1] for name in entries] == ["onauto.json", "oncpu.json"]


@pytest.mark.slow
def test_a_users_onnx_model_on_auto_shows_where_it_runs(tmp_path):
    import io
    import json

    from app import create_app
    from tests.support import imaging
    from tests.support.shared_models import build_folder

    folder = build_folder(tmp_path, "yolov5n_onnx")
    spec = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**spec, "runtime": "openvino"}))
    client = create_app(Settings(detection_enabled=True, detection_models=("yolov5n_onnx",), models_dir=tmp_path,
                                 openvino_device="AUTO")).test_client()
    response = client.post("/v2/detect", data={"image": (io.BytesIO(imaging.jpeg()), "x.jpg")})
    assert response.status_code == 200, response.get_data(as_text=True)
    details = client.get("/models/yolov5n_onnx").get_json()
    assert (details["runtime"], details["device"], details["openvino_device"]) == ("openvino", "cpu", "AUTO")
    assert "runtime_reason" not in details
