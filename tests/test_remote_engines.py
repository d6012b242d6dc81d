"""Model folders that name a model on a remote inference engine (format kserve_v2 or tfserving).

The fast tests check model.json's remote fields and a service whose engine is not there. The
slow ones start a REAL engine, KServe's model server (its own virtualenv, .venv-engine) on a
free loopback port, hosting the small real models from ../shared through LiteRT and ONNX
Runtime, and prove: the same answers as the local folder of the same model through both
protocols (V2 over REST with JSON and binary tensors, and over gRPC; TF Serving's REST shape, which
KServe V1 speaks, without metadata); concurrent requests batched into one remote call; an engine stopped mid-run gives
503s and the service recovers by itself; a lying, failing or slow engine gives 502 or 504.
"""
from __future__ import annotations

import concurrent.futures
import http.server
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import yaml

from app import create_app
from config import ConfigError, Settings
from dataplane.images import decode_image
from models.folder_spec import SpecError, load_spec
from runtimes import open_inference_pb2 as pb
from runtimes.open_inference_grpc import address
from runtimes.remote import checked_addresses, literal_address, refused_engine_address
from tests.support import imaging
from tests.support.engines import Engine, FreezingProxy, remote_folder, require_engine, wait_for
from tests.support.http import multipart
from tests.support.paths import ROOT
from tests.support.servers import free_port
from tests.support.shared_models import build_folder, photo, require_shared

PHOTOS = ["coral/cat.bmp", "coral/parrot.jpg", "coral/grace_hopper.bmp", "coral/hot_dog.jpg"]
RAW_PIXELS = {"resize": "stretch", "mean": [0, 0, 0], "std": [1, 1, 1]}  # the engine takes uint8 pixels


def upload(client, path: str, data: bytes, query: str = ""):
    """One multipart image, built in memory (werkzeug's test client would spool a large photo
    to a temporary file that outlives the test)."""
    content_type, body = multipart(files={"image": ("photo.jpg", data)})
    return client.post(path + query, data=body, content_type=content_type)


def write_spec(models_dir, name: str, **spec):
    folder = models_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.txt").write_text("a\nb\nc\n")
    base = {"task": "classification", "format": "kserve_v2", "url": "http://127.0.0.1:9", "model": "m",
            "labels": "labels.txt"}
    (folder / "model.json").write_text(json.dumps({**base, **spec}))
    return folder


def problems_of(folder) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(folder)
    return "\n".join(info.value.problems)


# --- model.json: the remote fields ------------------------------------------------------------

def test_a_remote_folder_is_read_with_its_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_TOKEN", "Bearer s3cret-token")
    spec = load_spec(write_spec(tmp_path, "remote", url="https://triton.internal:8443/prefix/", version=3,
                                timeout_s=2.5, headers_env={"Authorization": "ENGINE_TOKEN"}, encoding="binary",
                                input={"size": [224, 224], "layout": "NCHW"}))
    remote = spec.remote
    assert (remote.url, remote.model, remote.version, remote.timeout_s, remote.encoding) == \
        ("https://triton.internal:8443/prefix", "m", "3", 2.5, "binary")
    assert remote.headers == {"Authorization": "Bearer s3cret-token"} and spec.tensor_layout == "NCHW"
    assert "s3cret" not in json.dumps(spec.describe()) + repr(spec)
    assert "/prefix" not in json.dumps(spec.describe())   # /models shows the host only
    assert spec.describe()["remote"]["host"] == "triton.internal:8443"
    assert spec.describe()["remote"]["headers"] == ["Authorization"]


@pytest.mark.parametrize("fields,expected", [
    ({"url": None}, "'url' is required"),
    ({"url": "ftp://engine:21"}, "'url' must be an http://, https://, grpc:// or grpcs:// URL"),
    ({"url": "http://user:hunter2@engine:8000"}, "'url' must not hold credentials"),
    ({"url": "http://engine:8000/?token=x"}, "'url' must be a base URL"),
    ({"url": "http://engine:99999"}, "'url' has an invalid port"),
    ({"model": None}, "'model' is required"),
    ({"model": "a/b"}, "'model' is required"),
    ({"version": 0}, "'version' must be a positive whole number"),
    ({"version": "latest"}, "'version' must be a positive whole number"),
    ({"timeout_s": 0}, "'timeout_s' must be a number"),
    ({"file": "model.onnx"}, "'file' is for model files"),
    ({"encoding": "protobuf"}, "'encoding' is 'protobuf'"),
    ({"format": "tfserving", "encoding": "binary"}, "'encoding' is for kserve_v2"),
    ({"signature_name": "serving_default"}, "'signature_name' is for tfserving"),
    ({"headers_env": {"Authorization": "NOT_SET_ANYWHERE_42"}}, "names NOT_SET_ANYWHERE_42, which is not set"),
    ({"headers_env": {"Bad Header": "X"}}, "not an HTTP header name"),
    ({"headers_env": ["X"]}, "'headers_env' must be an object"),
    ({"input": {"layout": "HWC"}}, "'input.layout' is 'HWC'"),
    ({"url": "grpc://engine"}, "'url' needs the engine's gRPC port"),
    ({"url": "grpc://engine:8001/prefix"}, "without a path"),
    ({"url": "grpc://engine:8001", "encoding": "json"}, "gRPC carries tensors as raw bytes"),
    ({"url": "grpc://engine:8001", "headers_env": {"Grpc-Timeout": "HOME"}}, "cannot travel as gRPC metadata"),
    ({"url": "grpc://engine:8001", "headers_env": {"X-Key-Bin": "HOME"}}, "cannot travel as gRPC metadata"),
    ({"url": "grpc://engine:8001", "headers_env": {"X#Key": "HOME"}}, "cannot travel as gRPC metadata"),
    ({"url": "grpc://engine:8001", "headers_env": {"User-Agent": "HOME"}}, "cannot travel as gRPC metadata"),
    ({"format": "tfserving", "url": "grpc://engine:8500"},
     "'url' must be an http:// or https:// URL with a host (grpc:// and grpcs:// are for kserve_v2)"),
])
def test_remote_fields_are_checked_one_by_one(tmp_path, fields, expected):
    folder = write_spec(tmp_path, "remote", **fields)
    if fields.get("url", "") is None or fields.get("model", "") is None:
        spec = json.loads((folder / "model.json").read_text())
        (folder / "model.json").write_text(json.dumps({k: v for k, v in spec.items() if v is not None}))
    text = problems_of(folder)
    assert expected in text
    assert "hunter2" not in text and "token=x" not in text


def test_a_grpc_header_value_must_be_printable_ascii(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_TOKEN", "clé\tsecrète")
    text = problems_of(write_spec(tmp_path, "remote", url="grpc://engine:8001",
                                  headers_env={"Authorization": "ENGINE_TOKEN"}))
    assert "names ENGINE_TOKEN, whose value is not printable ASCII" in text and "secr" not in text


def test_a_grpc_folder_is_read_with_its_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_TOKEN", "Bearer s3cret-token")
    spec = load_spec(write_spec(tmp_path, "remote", url="grpcs://triton.internal",
                                headers_env={"Authorization": "ENGINE_TOKEN"}))
    assert spec.remote.transport == "grpc" and spec.remote.encoding == "binary"
    assert address(spec.remote.url) == "dns:///triton.internal:443"
    described = spec.describe()["remote"]
    assert described["transport"] == "grpc" and described["host"] == "triton.internal"
    assert load_spec(write_spec(tmp_path, "plain", url="grpc://[::1]:8001")).remote.transport == "grpc"
    assert address("grpc://[::1]:8001") == "dns:///[::1]:8001"
    assert address("grpc://unix:8081") == "dns:///unix:8081"   # a host named unix, not a socket file


def test_remote_fields_in_a_local_folder_are_refused(tmp_path):
    folder = write_spec(tmp_path, "local", format="onnx", file="labels.txt", input={"layout": "NHWC"})
    text = problems_of(folder)
    assert "'url' is for models on a remote engine" in text and "'model' is for models on a remote engine" in text
    assert "'input.layout' is for models on a remote engine" in text


def test_a_header_value_with_a_line_break_is_refused_without_echoing_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_TOKEN", "abc\r\nX-Injected: 1")
    text = problems_of(write_spec(tmp_path, "remote", headers_env={"Authorization": "ENGINE_TOKEN"}))
    assert "holds a line break" in text and "Injected" not in text


# --- the address policy: link-local and cloud metadata addresses ---------------------------------

METADATA_URLS = ["http://169.254.169.254/latest", "http://169.254.169.254:80", "https://169.254.170.2",
                 "http://[::ffff:169.254.169.254]", "http://[::ffff:a9fe:a9fe]:8000", "http://[fe80::1]:8000",
                 "http://[fd00:ec2::254]", "http://100.100.100.200", "http://192.0.0.192",
                 "http://[64:ff9b::a9fe:a9fe]", "http://[2002:a9fe:a9fe::1]:8000", "http://2852039166",
                 "http://0xa9.0xfe.0xa9.0xfe", "http://169.254.43518", "grpc://169.254.169.254:8001",
                 "grpcs://[fe80::5]"]


@pytest.mark.parametrize("url", METADATA_URLS)
def test_an_engine_url_at_a_metadata_address_stops_the_start(tmp_path, url):
    write_spec(tmp_path, "remote", url=url)
    with pytest.raises(ConfigError) as info:
        create_app(Settings(classification_enabled=True, classification_models=("remote",), models_dir=tmp_path))
    assert "MODELS_DIR/remote/model.json: 'url' names a link-local or cloud metadata address" in str(info.value)
    assert "FETCH_ALLOW_HOSTS" in str(info.value)


def test_fetch_allow_hosts_lets_a_named_host_through_and_private_engines_stay_allowed(tmp_path):
    allowed = load_spec(write_spec(tmp_path, "a", url="http://169.254.169.254:8000"),
                        allow_hosts=frozenset({"169.254.169.254:8000"}))
    assert allowed.remote.allowed
    assert load_spec(write_spec(tmp_path, "b", url="http://[fe80::1]:8000"), allow_hosts=frozenset({"fe80::1"}))
    assert "'url'" in problems_of(write_spec(tmp_path, "c", url="http://169.254.169.254:9000"))  # another port
    for url in ("http://10.0.0.5:8000", "http://192.168.1.2:8000", "grpc://172.16.0.1:8001", "http://127.0.0.1:8000",
                "http://[fd12::1]:8000", "http://triton:8000", "https://8.8.8.8"):
        assert load_spec(write_spec(tmp_path, "d", url=url)).remote.url == url


def test_the_policy_reads_every_spelling_of_an_address():
    for ip in ("169.254.0.1", "169.254.169.254", "fe80::1", "fe80::1%eth0", "fd00:ec2::254", "::ffff:169.254.169.254",
                    "100.100.100.200", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "2001:0:4136:e378:8000:63bf:5601:5601"):
        assert refused_engine_address(ip), ip
    for ip in ("10.0.0.1", "127.0.0.1", "::1", "fd12::1", "192.168.0.1", "8.8.8.8", "::ffff:10.0.0.1"):
        assert not refused_engine_address(ip), ip
    assert literal_address("2852039166") == literal_address("0xa9.0xfe.0xa9.0xfe") == "169.254.169.254"
    assert literal_address("triton") is None and literal_address("cafe") is None and literal_address("1e100") is None


def resolving(monkeypatch, names: dict[str, str]):
    """socket.getaddrinfo answering `names` (host → IPv4 address); other hosts as the system does."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], int(port or 0)))]
        return real(host, port, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_an_engine_name_that_resolves_to_a_metadata_address_is_never_connected(tmp_path, monkeypatch, scheme):
    """A name is checked when the engine is connected to: the model stays not ready (503), and
    /ready says why; the start is not stopped (DNS may change)."""
    resolving(monkeypatch, {"metadata.test": "169.254.169.254"})
    write_spec(tmp_path, "remote", url=f"{scheme}://metadata.test:8001")
    client = create_app(Settings(classification_enabled=True, classification_models=("remote",),
                                 models_dir=tmp_path)).test_client()
    response = upload(client, "/v2/classify", small_jpeg())
    assert response.status_code == 503 and response.get_json()["error"]["type"] == "model_not_ready"
    reason = client.get("/ready").get_json()["models"]["remote"]["reason"]
    assert "resolves to a link-local or cloud metadata address" in reason
    assert checked_addresses("metadata.test", 8001, frozenset({"metadata.test"})) == ["169.254.169.254"]


def test_a_checked_name_is_connected_at_its_checked_address_with_its_own_host_header(tmp_path, monkeypatch):
    seen = []

    class Door(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            seen.append(self.headers["Host"])
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Door)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    resolving(monkeypatch, {"engine.test": "127.0.0.1"})
    try:
        write_spec(tmp_path, "remote", url=f"http://engine.test:{server.server_port}")
        client = create_app(Settings(classification_enabled=True, classification_models=("remote",),
                                     models_dir=tmp_path)).test_client()
        assert upload(client, "/v2/classify", small_jpeg()).status_code == 503
        reason = client.get("/ready").get_json()["models"]["remote"]["reason"]
    finally:
        server.shutdown()
        server.server_close()
    assert "says the model is not ready (HTTP 503)" in reason
    assert seen and set(seen) == {f"engine.test:{server.server_port}"}


# --- an engine that is not there ---------------------------------------------------------------

def nowhere_app(tmp_path, scheme: str = "http", **settings):
    write_spec(tmp_path, "remote", url=f"{scheme}://127.0.0.1:{free_port()}", model="mobilenet")
    return create_app(Settings(classification_enabled=True, classification_models=("remote",),
                               models_dir=tmp_path, **settings))


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_an_engine_that_is_down_at_start_up_stops_nothing(tmp_path, scheme):
    client = nowhere_app(tmp_path, scheme).test_client()   # no ConfigError: the engine may come up later
    assert client.get("/health").status_code == 200
    response = upload(client, "/v2/classify", small_jpeg())
    assert response.status_code == 503 and response.get_json()["error"]["type"] == "model_not_ready"
    assert response.headers["Retry-After"] == "5"
    ready = client.get("/ready")
    assert ready.status_code == 503
    model = ready.get_json()["models"]["remote"]
    assert model["state"] == "failed" and model["engine"]["host"].startswith("127.0.0.1:")
    assert "could not be reached" in model["reason"]


def secret_header_upload(tmp_path, monkeypatch, caplog, url: str):
    """A service whose one remote folder names the engine at `url`, with a secret header from
    the environment, answers one upload: (the response, /ready's reason for the model)."""
    monkeypatch.setenv("ENGINE_TOKEN", "Bearer s3cret-token")
    write_spec(tmp_path, "remote", url=url, model="mobilenet", headers_env={"Authorization": "ENGINE_TOKEN"})
    caplog.set_level(logging.DEBUG)
    client = create_app(Settings(classification_enabled=True, classification_models=("remote",),
                                 models_dir=tmp_path)).test_client()
    response = upload(client, "/v2/classify", small_jpeg())
    return response, client.get("/ready").get_json()["models"]["remote"]["reason"]


def test_headers_reach_the_engine_and_never_a_log_line(tmp_path, monkeypatch, caplog):
    """A bare HTTP listener stands in for the engine's front door: it records the headers of the
    readiness request and answers 503, so the model stays not ready."""
    seen = []

    class Door(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            seen.append(dict(self.headers))
            self.send_response(503)
            self.send_header("Content-Length", "33")
            self.end_headers()
            self.wfile.write(b'{"error": "ENGINE-INTERNAL-TEXT"}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Door)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        response, reason = secret_header_upload(tmp_path, monkeypatch, caplog, f"http://127.0.0.1:{server.server_port}")
        assert response.status_code == 503
        assert "says the model is not ready (HTTP 503)" in reason
    finally:
        server.shutdown()
        server.server_close()
    assert seen and all(h.get("Authorization") == "Bearer s3cret-token" for h in seen)
    assert "s3cret" not in caplog.text and "ENGINE-INTERNAL-TEXT" not in caplog.text + response.get_data(as_text=True)


def grpc_engine(**handlers):
    """A bare gRPC server on a free loopback port answering the protocol's methods with the
    given functions (request, context) -> answer: an engine that lies in ways a real one can
    be made to only with effort. Returns (server, port)."""
    answers = {"ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
               "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
               "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse)}
    methods = {name: grpc.unary_unary_rpc_method_handler(function, request_deserializer=answers[name][0].FromString,
                                                         response_serializer=answers[name][1].SerializeToString)
               for name, function in handlers.items()}
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("inference.GRPCInferenceService", methods),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def _metadata(request, context):
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(name=request.name, inputs=[tensor(name="x", datatype="UINT8", shape=[-1, 8, 8, 3])],
                                    outputs=[tensor(name="y", datatype="UINT8", shape=[-1, 3])])


def _answer(**output):
    def infer(request, context):
        return pb.ModelInferResponse(outputs=[pb.ModelInferResponse.InferOutputTensor(name="y", **output)])
    return infer


@pytest.mark.parametrize("output", [
    {"datatype": "UINT8", "shape": [2**32, 2**32]},                     # numpy's int64 product wraps to 0
    {"datatype": "UINT8", "shape": [1] * 65},                           # more dimensions than numpy has
    {"datatype": "UINT8", "shape": [1, 3], "contents": pb.InferTensorContents(uint_contents=[300, 1, 2])},
    {"datatype": "UINT8", "shape": [1, 3], "contents": pb.InferTensorContents(uint_contents=[1, 2])},
    {"datatype": "BYTES", "shape": [1, 3]},
])
def test_a_grpc_engine_that_lies_about_its_output_is_a_502(tmp_path, output):
    server, port = grpc_engine(ModelReady=lambda request, context: pb.ModelReadyResponse(ready=True),
                               ModelMetadata=_metadata, ModelInfer=_answer(**output))
    try:
        write_spec(tmp_path, "remote", url=f"grpc://127.0.0.1:{port}", model="m",
                   input={"resize": "stretch", "mean": [0, 0, 0], "std": [1, 1, 1]})
        client = create_app(Settings(classification_enabled=True, classification_models=("remote",),
                                     models_dir=tmp_path, cache_maxsize=0)).test_client()
        response = upload(client, "/v2/classify", small_jpeg())
        assert response.status_code == 502 and response.get_json()["error"]["type"] == "upstream_error"
        assert client.get("/health").status_code == 200
    finally:
        server.stop(None)


def test_typed_grpc_outputs_are_read_like_raw_ones(tmp_path):
    """An engine may answer with typed lists instead of raw bytes (the protocol allows both)."""
    server, port = grpc_engine(ModelReady=lambda request, context: pb.ModelReadyResponse(ready=True),
                               ModelMetadata=_metadata,
                               ModelInfer=_answer(datatype="UINT8", shape=[1, 3],
                                                  contents=pb.InferTensorContents(uint_contents=[5, 250, 1])))
    try:
        write_spec(tmp_path, "remote", url=f"grpc://127.0.0.1:{port}", model="m",
                   input={"resize": "stretch", "mean": [0, 0, 0], "std": [1, 1, 1]})
        client = create_app(Settings(classification_enabled=True, classification_models=("remote",),
                                     models_dir=tmp_path, cache_maxsize=0)).test_client()
        response = upload(client, "/v2/classify", small_jpeg(), query="?top_k=3")
        assert response.status_code == 200
        predictions = response.get_json()["results"][0]["predictions"]
        assert [p["label"] for p in predictions] == ["b", "a", "c"]
    finally:
        server.stop(None)


def test_headers_reach_a_grpc_engine_as_metadata_and_its_message_never_a_log_line(tmp_path, monkeypatch, caplog):
    """A bare gRPC server stands in for the engine: it records the metadata of the readiness
    call and fails it with a message of its own, so the model cannot load."""
    seen = []

    def model_ready(request, context):
        seen.append((request.name, dict(context.invocation_metadata())))
        context.abort(grpc.StatusCode.INTERNAL, "ENGINE-INTERNAL-TEXT")

    server, port = grpc_engine(ModelReady=model_ready)
    try:
        response, reason = secret_header_upload(tmp_path, monkeypatch, caplog, f"grpc://127.0.0.1:{port}")
        assert response.status_code == 503
        assert "answered gRPC status INTERNAL to the model readiness check" in reason
    finally:
        server.stop(None)
    assert seen and all(name == "mobilenet" and meta.get("authorization") == "Bearer s3cret-token"
                        for name, meta in seen)
    assert "s3cret" not in caplog.text and "ENGINE-INTERNAL-TEXT" not in caplog.text + response.get_data(as_text=True)


def small_jpeg() -> bytes:
    return imaging.jpeg((64, 48))


# --- a real engine ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    log = tmp_path_factory.mktemp("engine") / "engine.log"
    started = Engine(["mobilenet_v2_quant", "yolov5n_onnx"], log, variants=True).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def remote_app(engine, tmp_path_factory):
    """The local folders and their remote twins, in one service."""
    models_dir = tmp_path_factory.mktemp("remote_models")
    build_folder(models_dir, "mobilenet_v2_quant")
    build_folder(models_dir, "yolov5n_onnx")
    url = engine.url
    classifiers = {
        "mb_v2_json": dict(format="kserve_v2", model="mobilenet_v2_quant", encoding="json"),
        "mb_v2_binary": dict(format="kserve_v2", model="mobilenet_v2_quant", encoding="binary"),
        "mb_v1": dict(format="tfserving", model="mobilenet_v2_quant",
                      input={**RAW_PIXELS, "size": [224, 224], "layout": "NHWC"}),
        "mb_wrong_shape": dict(format="kserve_v2", model="mobilenet_v2_quant_wrong_shape"),
        "mb_nan": dict(format="kserve_v2", model="mobilenet_v2_quant_nan"),
        "mb_error": dict(format="kserve_v2", model="mobilenet_v2_quant_error"),
        "mb_slow": dict(format="kserve_v2", model="mobilenet_v2_quant_slow", timeout_s=1),
    }
    # The same models and lies over gRPC.
    for name, fields in list(classifiers.items()):
        if name.startswith("mb_v2") or fields["format"] == "tfserving":
            continue
        classifiers[name.replace("mb_", "mb_grpc_")] = dict(fields, url=engine.grpc_url)
    classifiers["mb_grpc"] = dict(format="kserve_v2", model="mobilenet_v2_quant", url=engine.grpc_url)
    for name, fields in classifiers.items():
        remote_folder(models_dir, name, "mobilenet_v2_quant", **{"url": url, "input": RAW_PIXELS, **fields})
    remote_folder(models_dir, "yolo_v2", "yolov5n_onnx", url=url, format="kserve_v2", model="yolov5n_onnx",
                  encoding="binary")
    remote_folder(models_dir, "yolo_grpc", "yolov5n_onnx", url=engine.grpc_url, format="kserve_v2",
                  model="yolov5n_onnx")
    remote_folder(models_dir, "yolo_v1", "yolov5n_onnx", url=url, format="tfserving", model="yolov5n_onnx",
                  timeout_s=120, input={"size": [640, 640], "resize": "letterbox", "mean": [0, 0, 0],
                                        "std": [255, 255, 255], "layout": "NCHW"})
    settings = Settings(classification_enabled=True, classification_models=("mobilenet_v2_quant", *classifiers),
                        detection_enabled=True, detection_models=("yolov5n_onnx", "yolo_v2", "yolo_grpc", "yolo_v1"),
                        models_dir=models_dir, cache_maxsize=0, inference_concurrency=8, max_batch_size=8,
                        batch_timeout_ms=50, inference_timeout=180)
    return create_app(settings)


def image(relative: str):
    return decode_image(photo(relative).read_bytes()).image


@pytest.mark.slow
@pytest.mark.parametrize("remote", ["mb_v2_json", "mb_v2_binary", "mb_grpc", "mb_v1"])
def test_a_remote_classifier_answers_as_the_local_one(remote_app, remote):
    registry = remote_app.extensions["registry"]
    images = [image(p) for p in PHOTOS]
    local = registry.get("mobilenet_v2_quant").predict(images)
    far = registry.get(remote).predict(images)
    assert far.shape == local.shape == (len(PHOTOS), 1001)
    assert (far.argmax(1) == local.argmax(1)).all()
    assert np.abs(far - local).max() < 1e-4
    client = remote_app.test_client()
    answers = [upload(client, "/v2/classify", photo("coral/cat.bmp").read_bytes(), query=f"?model={m}&top_k=5")
               for m in ("mobilenet_v2_quant", remote)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].get_json()["results"] == answers[1].get_json()["results"]
    assert answers[1].get_json()["results"][0]["predictions"][0]["label"].startswith("Egyptian cat")


@pytest.mark.slow
@pytest.mark.parametrize("remote", ["yolo_v2", "yolo_grpc", "yolo_v1"])
def test_a_remote_detector_finds_what_the_local_one_finds(remote_app, remote):
    registry = remote_app.extensions["registry"]
    for relative in ("darknet/dog.jpg", "ultralytics/bus.jpg"):
        img = image(relative)
        local = sorted(registry.get("yolov5n_onnx").predict([img], 0.3)[0], key=lambda d: -d.score)
        far = sorted(registry.get(remote).predict([img], 0.3)[0], key=lambda d: -d.score)
        assert local and [d.label for d in far] == [d.label for d in local]
        assert all(abs(a.score - b.score) < 1e-4 for a, b in zip(far, local))
        assert all(max(abs(p - q) for p, q in zip(a.box, b.box)) <= 1 for a, b in zip(far, local))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mb_v2_binary", "mb_grpc"])
def test_concurrent_requests_become_one_remote_call(remote_app, engine, model):
    client_data = photo("coral/parrot.jpg").read_bytes()
    before = engine.calls("mobilenet_v2_quant")

    def one(_):
        return upload(remote_app.test_client(), "/v2/classify", client_data, query=f"?model={model}").status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(8)))
    assert statuses == [200] * 8
    assert 1 <= engine.calls("mobilenet_v2_quant") - before <= 2


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mb_wrong_shape", "mb_nan", "mb_error",
                                   "mb_grpc_wrong_shape", "mb_grpc_nan", "mb_grpc_error"])
def test_a_lying_or_failing_engine_is_a_502_that_echoes_nothing(remote_app, model, caplog):
    client = remote_app.test_client()
    response = upload(client, "/v2/classify", photo("coral/cat.bmp").read_bytes(), query=f"?model={model}")
    assert response.status_code == 502
    error = response.get_json()["error"]
    assert error["type"] == "upstream_error"
    text = response.get_data(as_text=True) + caplog.text
    assert "ENGINE-INTERNAL-DETAIL" not in text and "/models/secret" not in text
    assert client.get("/health").status_code == 200
    # The engine says the model is ready, so the replica stays in service for the other models.
    assert remote_app.extensions["registry"].get(model).ready


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mb_slow", "mb_grpc_slow"])
def test_a_slow_engine_is_a_504(remote_app, model):
    response = upload(remote_app.test_client(), "/v2/classify", photo("coral/cat.bmp").read_bytes(),
                      query=f"?model={model}")
    assert response.status_code == 504 and response.get_json()["error"]["type"] == "inference_timeout"


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_an_engine_stopped_mid_run_gives_503s_and_the_service_recovers(tmp_path, transport):
    engine = Engine(["mobilenet_v2_quant"], tmp_path / "engine.log").start()
    try:
        url = engine.grpc_url if transport == "grpc" else engine.url
        remote_folder(tmp_path / "models", "remote", "mobilenet_v2_quant", url=url, format="kserve_v2",
                      model="mobilenet_v2_quant", input=RAW_PIXELS)
        client = create_app(Settings(classification_enabled=True, classification_models=("remote",),
                                     models_dir=tmp_path / "models", cache_maxsize=0)).test_client()
        data = photo("coral/cat.bmp").read_bytes()
        assert upload(client, "/v2/classify", data).status_code == 200
        assert client.get("/ready").status_code == 200

        engine.stop()
        for _ in range(3):
            response = upload(client, "/v2/classify", data)
            assert response.status_code == 503 and response.get_json()["error"]["type"] == "model_not_ready"
            assert response.headers["Retry-After"] == "5"
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.get_json()["models"]["remote"]["engine"]["state"] == "unreachable"

        engine.start()  # the same port; the service is not restarted
        wait_for(lambda: client.get("/ready").status_code == 200, 20, "/ready to see the engine again")
        assert upload(client, "/v2/classify", data).status_code == 200
    finally:
        engine.stop()


@pytest.mark.slow
def test_a_grpc_engine_that_goes_silent_on_a_live_connection_is_dialled_again(engine, tmp_path):
    """A lost host or a partition: the open connection hears nothing, not even a reset. gRPC's
    keepalive ping finds that out while calls wait, and the next connection works."""
    proxy = FreezingProxy(engine.grpc_port)
    try:
        remote_folder(tmp_path / "models", "remote", "mobilenet_v2_quant", url=f"grpc://127.0.0.1:{proxy.port}",
                      format="kserve_v2", model="mobilenet_v2_quant", input=RAW_PIXELS, timeout_s=2)
        client = create_app(Settings(classification_enabled=True, classification_models=("remote",),
                                     models_dir=tmp_path / "models", cache_maxsize=0)).test_client()
        data = photo("coral/cat.bmp").read_bytes()
        assert upload(client, "/v2/classify", data).status_code == 200
        proxy.freeze()
        statuses, deadline = [], time.monotonic() + 40
        while time.monotonic() < deadline and statuses[-1:] != [200]:
            statuses.append(upload(client, "/v2/classify", data).status_code)
        assert statuses[-1] == 200, statuses          # without keepalive: 504 for as long as TCP waits
        assert set(statuses[:-1]) <= {503, 504}
        assert client.get("/health").status_code == 200
    finally:
        proxy.close()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_an_engine_that_comes_up_after_the_service_makes_it_ready_by_itself(tmp_path, transport):
    port, grpc_port = free_port(), free_port()
    url = f"grpc://127.0.0.1:{grpc_port}" if transport == "grpc" else f"http://127.0.0.1:{port}"
    remote_folder(tmp_path / "models", "remote", "mobilenet_v2_quant", url=url,
                  format="kserve_v2", model="mobilenet_v2_quant", input=RAW_PIXELS)
    client = create_app(Settings(classification_enabled=True, classification_models=("remote",),
                                 models_dir=tmp_path / "models", preload_models=True)).test_client()
    wait_for(lambda: client.get("/ready").get_json()["models"]["remote"]["state"] == "failed", 10, "a failed load")
    engine = Engine(["mobilenet_v2_quant"], tmp_path / "engine.log", port=port, grpc_port=grpc_port).start()
    try:
        # No request arrives (the orchestrator sends none to an unready replica): the preload
        # thread retries every 5 s on its own.
        wait_for(lambda: client.get("/ready").status_code == 200, 30, "the model to load by itself")
        assert upload(client, "/v2/classify", photo("coral/cat.bmp").read_bytes()).status_code == 200
    finally:
        engine.stop()


@pytest.mark.slow
def test_an_engine_without_metadata_needs_the_input_size_and_layout(engine, tmp_path):
    remote_folder(tmp_path, "v1_bare", "mobilenet_v2_quant", url=engine.url, format="tfserving",
                  model="mobilenet_v2_quant", input=RAW_PIXELS)
    with pytest.raises(ConfigError) as info:
        create_app(Settings(classification_enabled=True, classification_models=("v1_bare",), models_dir=tmp_path))
    assert "'input.size' and 'input.layout' (NHWC or NCHW) are required" in str(info.value)


@pytest.mark.slow
def test_labels_that_do_not_match_the_engines_model_stop_the_start(engine, tmp_path):
    folder = remote_folder(tmp_path, "short", "mobilenet_v2_quant", url=engine.url, format="kserve_v2",
                           model="mobilenet_v2_quant", input=RAW_PIXELS)
    (folder / "labels.txt").write_text("only\nthree\nlabels\n")
    with pytest.raises(ConfigError) as info:
        create_app(Settings(classification_enabled=True, classification_models=("short",), models_dir=tmp_path))
    assert "'labels' has 3 lines but the model has 1001 outputs" in str(info.value)


# --- what docs/remote-engines.md and the compose example show -----------------------------------

def test_the_documented_example_is_a_valid_remote_folder(tmp_path, monkeypatch):
    section = (ROOT / "docs" / "remote-engines.md").read_text()
    example = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    monkeypatch.setenv("ENGINE_TOKEN", "Bearer example")
    folder = tmp_path / "mobilenet_v2"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps(example))
    (folder / "labels.txt").write_text("a\n")
    spec = load_spec(folder)
    assert spec.remote.host == "triton:8000" and spec.remote.headers == {"Authorization": "Bearer example"}


def test_the_compose_example_runs_the_service_with_valid_remote_folders(tmp_path):
    path = ROOT / "docs" / "docker-compose.engine.yml"
    compose = yaml.safe_load(path.read_text())
    service = compose["services"]["image-classification"]
    assert set(service["depends_on"]) == {"triton", "tfserving"}
    # The model.json files the comments show, written where the volumes mount them.
    lines, examples = path.read_text().splitlines(), {}
    for i, line in enumerate(lines):
        found = re.match(r"^# models/(\w+)/model\.json", line)
        if found:
            body = []
            for text in lines[i + 1:]:
                if not text.startswith("#  "):
                    break
                body.append(text[1:])
            examples[found.group(1)] = "".join(body)
    mounted = {volume.split(":")[1].rsplit("/", 1)[1] for volume in service["volumes"]}
    assert set(examples) == mounted
    env = {k: str(v) for k, v in service["environment"].items()}
    for name, text in examples.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "model.json").write_text(text)
        (folder / "labels.txt").write_text("\n".join(f"class{i}" for i in range(80)) + "\n")
        spec = load_spec(folder)
        assert spec.remote.host in ("triton:8001", "tfserving:8501")
        assert spec.remote.transport == ("grpc" if spec.remote.host.startswith("triton") else "http")
        assert name in env["IMAGE_CLASSIFICATION_MODEL"].split(",") + env["OBJECT_DETECTION_MODEL"].split(",")
    settings = Settings.from_env({**env, "MODELS_DIR": str(tmp_path)})
    assert settings.preload_models and settings.max_batch_size == 8 and settings.batch_timeout_ms == 20


@pytest.mark.slow
@pytest.mark.bench
def test_the_remote_benchmark_runs(tmp_path):
    require_engine(), require_shared()
    out = tmp_path / "remote.json"
    result = subprocess.run([sys.executable, "-m", "bench.remote", "--requests", "2", "--repeat", "2", "--bursts", "1",
                             "--detector-repeat", "0", "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["one_client"]) == {"mobilenet_v2_quant", "remote_v2_binary", "remote_v2_json", "remote_v2_grpc",
                                         "remote_v1"}
    assert all(entry["p50_ms"] > 0 for entry in report["one_client"].values())
    for key in ("bursts_of_8", "bursts_of_8_grpc"):
        assert report[key]["requests_ok"] == 8 and 1 <= report[key]["max_calls_per_burst"] <= 8
