"""The Open Inference Protocol (KServe V2) served for every configured model (api/open_inference.py,
runtimes/open_inference_tensors.py).

Fast: the routes' shapes as the protocol and its two common clients read them, API keys, encoded
images against /v2/classify and /v2/detect, the network's own tensors, the classification and
binary extensions, and hostile bodies (never a 500), on instant fake models.
Slow: the real server (`python app.py`) with real small models from ../shared (a quantized
MobileNetV2 TFLite classifier, a YOLOv8n detector) and a built-in MobileNetV2 with random weights,
called by the real clients, unmodified, each in its own virtualenv: tritonclient[http]
(.venv-clients) and KServe's InferenceRESTClient (.venv-engine), JSON and binary; the classes,
scores and boxes they read equal /v2/classify's and /v2/detect's for the same photos.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests

from app import create_app
from config import Settings
from contract import NetworkTensors, TensorInfo
from dataplane.images import decode_image
from detectors.yolo_decode import decode, nms
from models.preprocessing import normalise, place
from runtimes.base import dequantize, quantize
from runtimes.open_inference_tensors import (
    HEADER_LENGTH,
    V2_TYPES,
    TensorError,
    bytes_elements,
    read_tensors,
    split_body,
    write_tensors,
)
from tests.support import imaging
from tests.support.fakes import FakeClassifier, FakeDetector
from tests.support.http import LEAKS, post_images
from tests.support.paths import ROOT
from tests.support.servers import start_server, stop_server, wait_until
from tests.support.shared_models import build_folder, photo, require_shared

CLASSIFY, DETECT = "/v2/models/fake_classifier/infer", "/v2/models/fake_detector/infer"


class TensorClassifier(FakeClassifier):
    """A classifier whose network takes FP32 [N, 2, 2, 3] and answers each channel's sum."""

    name = "tensor_classifier"

    def network_tensors(self):
        float32 = np.dtype(np.float32)
        return NetworkTensors(TensorInfo("pixels", (None, 2, 2, 3), float32),
                              (TensorInfo("sums", (None, 3), float32),), "RGB 0-255, 2x2, NHWC")

    def infer_tensors(self, batch):
        with np.errstate(over="ignore"):
            return [batch.reshape(len(batch), -1, 3).sum(axis=1, dtype=np.float32)]


def oip_app(tmp_path, classifier=None, **settings):
    return create_app(Settings(classification_enabled=True, detection_enabled=True, models_dir=tmp_path, **settings),
                      classifier=classifier or FakeClassifier(), detector=FakeDetector())


def binary_request(header: dict, *chunks: bytes) -> tuple[bytes, dict]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), {HEADER_LENGTH: str(len(head))}


def images_request(images: list[bytes], binary: bool = True, outputs=None, **parameters) -> tuple[bytes, dict]:
    tensor = {"name": "image", "datatype": "BYTES", "shape": [len(images)]}
    header = {"inputs": [tensor], "parameters": parameters}
    if outputs is not None:
        header["outputs"] = outputs
    if not binary:
        tensor["data"] = [base64.b64encode(image).decode() for image in images]
        return json.dumps(header).encode(), {}
    raw = bytes_elements(np.array(images, dtype=object))
    tensor["parameters"] = {"binary_data_size": len(raw)}
    return binary_request(header, raw)


def outputs_of(response) -> dict[str, np.ndarray]:
    """The answer's outputs read back with the codec (JSON or binary)."""
    assert response.status_code == 200, response.get_data(as_text=True)
    head, raw = split_body(response.get_data(), response.headers.get(HEADER_LENGTH))
    document = json.loads(head)
    assert document["model_version"] == "1" and document["model_name"] in response.request.path
    return dict(read_tensors(document["outputs"], raw, "output"))


def oip_error(response, code: int) -> str:
    """The protocol's error shape: {"error": "<message>"}, nothing internal in it."""
    assert response.status_code == code, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    assert not any(leak in body["error"] for leak in LEAKS)
    return body["error"]


# --- health, metadata, configuration ------------------------------------------------------------

def test_health_answers_as_both_clients_read_it(tmp_path):
    client = oip_app(tmp_path).test_client()
    assert client.get("/v2/health/live").get_json() == {"live": True}
    not_ready = client.get("/v2/health/ready")   # lazy models: not loaded yet
    assert not_ready.status_code == 503 and not_ready.get_json()["ready"] is False
    assert client.get("/v2/models/fake_classifier/ready").status_code == 503
    for name in ("fake_classifier", "fake_detector"):
        assert client.get(f"/v2/models/{name}").status_code == 200   # metadata loads the model
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2/models/fake_classifier/versions/1/ready").get_json() == {"name": "fake_classifier",
                                                                                   "ready": True}
    assert "not configured" in oip_error(client.get("/v2/models/nope/ready"), 404)
    assert "no version '2'" in oip_error(client.get("/v2/models/fake_classifier/versions/2/ready"), 404)


def test_metadata_lists_the_encoded_images_input_and_the_network_tensors(tmp_path):
    client = oip_app(tmp_path, classifier=TensorClassifier()).test_client()
    server = client.get("/v2").get_json()
    assert set(server["extensions"]) == {"binary_tensor_data", "classification", "model_configuration"}
    meta = client.get("/v2/models/tensor_classifier").get_json()
    assert meta["name"] == "tensor_classifier" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 2, 2, 3]},
                              {"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "sums", "datatype": "FP32", "shape": [-1, 3]},
                               {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    detector = client.get("/v2/models/fake_detector/versions/1").get_json()
    assert detector["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in detector["outputs"]] == ["detections", "labels", "num_detections"]
    config = client.get("/v2/models/tensor_classifier/config").get_json()
    assert config["max_batch_size"] == 16
    assert config["input"][0] == {"name": "pixels", "data_type": "TYPE_FP32", "dims": [2, 2, 3]}
    assert config["input"][1]["data_type"] == "TYPE_STRING"
    assert config["parameters"]["network_input"]["string_value"] == "RGB 0-255, 2x2, NHWC"


def test_api_keys_guard_everything_but_health(tmp_path):
    client = oip_app(tmp_path, api_keys=("k1",)).test_client()
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/models/fake_classifier/ready").status_code == 503
    body, headers = images_request([imaging.jpeg()])
    for response in (client.get("/v2"), client.get("/v2/models/fake_classifier"),
                     client.get("/v2/models/fake_classifier/config"),
                     client.post(CLASSIFY, data=body, headers=headers)):
        assert "API key" in oip_error(response, 401)
    assert client.post(CLASSIFY, data=body, headers={**headers, "X-API-Key": "k1"}).status_code == 200


# --- inference ------------------------------------------------------------------------------------

@pytest.mark.parametrize("binary", [True, False])
def test_encoded_images_give_what_v2_classify_gives(tmp_path, binary):
    client = oip_app(tmp_path).test_client()
    images = [imaging.jpeg(color=(200, 30, 30)), imaging.png(color=(20, 40, 220))]
    reference = post_images(client, "/v2/classify?top_k=3", *images).get_json()["results"]
    body, headers = images_request(images, binary, outputs=[
        {"name": "probabilities", "parameters": {"binary_data": binary}}])
    probabilities = outputs_of(client.post(CLASSIFY, data=body, headers=headers))["probabilities"]
    assert probabilities.shape == (2, 3) and probabilities.dtype == np.float32
    labels = ["red", "green", "blue"]
    for row, result in zip(probabilities, reference):
        assert [labels[i] for i in np.argsort(-row)] == [p["label"] for p in result["predictions"]]
        assert np.allclose(sorted(row, reverse=True), [p["score"] for p in result["predictions"]], atol=1e-4)
    body, headers = images_request(images, binary, outputs=[
        {"name": "probabilities", "parameters": {"classification": 2, "binary_data": binary}}])
    classes = outputs_of(client.post(CLASSIFY, data=body, headers=headers))["probabilities"]
    assert classes.shape == (2, 2)
    for row, result in zip(classes, reference):
        parsed = [v.decode().split(":") for v in row]
        assert [label for _, _, label in parsed] == [p["label"] for p in result["predictions"][:2]]
        assert [labels.index(label) for _, index, label in parsed] == [int(index) for _, index, _ in parsed]
        assert np.allclose([float(score) for score, _, _ in parsed],
                           [p["score"] for p in result["predictions"][:2]], atol=1e-4)


@pytest.mark.parametrize("binary", [True, False])
def test_encoded_images_give_what_v2_detect_gives(tmp_path, binary):
    client = oip_app(tmp_path).test_client()
    images = [imaging.jpeg(size=(64, 48)), imaging.png(size=(10, 30))]
    reference = post_images(client, "/v2/detect?min_score=0.2", *images).get_json()["results"]
    body, headers = images_request(images, binary, binary_data_output=binary, min_score=0.2)
    response = client.post(DETECT, data=body, headers=headers)
    assert (HEADER_LENGTH in response.headers) == binary
    outputs = outputs_of(response)
    assert outputs["detections"].shape == (2, 2, 6) and outputs["num_detections"].tolist() == [2, 2]
    for boxes, labels, result in zip(outputs["detections"], outputs["labels"], reference):
        expected = result["detections"]
        assert [label.decode() for label in labels] == [d["label"] for d in expected]
        assert boxes[:, :4].tolist() == [[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in expected]
        assert np.allclose(boxes[:, 4], [d["score"] for d in expected], atol=1e-4)
        assert boxes[:, 5].tolist() == [["dog", "cat"].index(d["label"]) for d in expected]
    body, headers = images_request(images[:1], binary, min_score="0.5", classes="cat")   # none left: K = 0
    outputs = outputs_of(client.post(DETECT, data=body, headers=headers))
    assert outputs["detections"].shape == (1, 0, 6) and outputs["num_detections"].tolist() == [0]


@pytest.mark.parametrize("binary", [True, False])
def test_the_network_s_own_tensor_gives_the_network_s_outputs(tmp_path, binary):
    client = oip_app(tmp_path, classifier=TensorClassifier()).test_client()
    batch = np.arange(2 * 2 * 2 * 3, dtype=np.float32).reshape(2, 2, 2, 3)
    tensor = {"name": "pixels", "datatype": "FP32", "shape": [2, 2, 2, 3]}
    if binary:
        tensor["parameters"] = {"binary_data_size": batch.nbytes}
        body, headers = binary_request({"inputs": [tensor], "id": "req-7"}, batch.tobytes())
    else:
        body, headers = json.dumps({"inputs": [{**tensor, "data": batch.tolist()}], "id": "req-7"}).encode(), {}
    response = client.post("/v2/models/tensor_classifier/infer", data=body, headers=headers)
    assert json.loads(split_body(response.get_data(), response.headers.get(HEADER_LENGTH))[0])["id"] == "req-7"
    assert np.array_equal(outputs_of(response)["sums"], batch.reshape(2, -1, 3).sum(axis=1))


def test_json_cannot_carry_a_non_finite_output_but_binary_can(tmp_path):
    client = oip_app(tmp_path, classifier=TensorClassifier()).test_client()
    huge = np.full((1, 2, 2, 3), 3e38, dtype=np.float32)   # sums overflow to infinity
    tensor = {"name": "pixels", "datatype": "FP32", "shape": [1, 2, 2, 3], "parameters": {"binary_data_size": 48}}
    body, headers = binary_request({"inputs": [tensor]}, huge.tobytes())
    assert "JSON cannot carry" in oip_error(client.post("/v2/models/tensor_classifier/infer", data=body,
                                                        headers=headers), 400)
    body, headers = binary_request({"inputs": [tensor], "parameters": {"binary_data_output": True}}, huge.tobytes())
    assert np.isinf(outputs_of(client.post("/v2/models/tensor_classifier/infer", data=body, headers=headers))["sums"]).all()


def test_limits_images_per_request_and_body_size(tmp_path):
    client = oip_app(tmp_path, max_request_images=2, max_upload_mb=1).test_client()
    body, headers = images_request([imaging.jpeg()] * 3)
    assert "MAX_IMAGES_PER_REQUEST" in oip_error(client.post(CLASSIFY, data=body, headers=headers), 400)
    body, headers = images_request([b"x" * (2 << 20)])
    assert "larger than the limit" in oip_error(client.post(CLASSIFY, data=body, headers=headers), 413)


def test_a_bad_image_fails_the_request_naming_it(tmp_path):
    client = oip_app(tmp_path).test_client()
    body, headers = images_request([imaging.jpeg(), b"not an image"])
    assert oip_error(client.post(CLASSIFY, data=body, headers=headers), 400).startswith("Image 1: ")
    body, headers = images_request([imaging.png_header_claiming(100_000, 100_000)])
    assert "too large" in oip_error(client.post(DETECT, data=body, headers=headers), 413)


def _tensor(datatype="BYTES", shape=(1,), **extra) -> dict:
    return {"name": "image", "datatype": datatype, "shape": list(shape), **extra}


def _json(document) -> tuple[bytes, dict]:
    return json.dumps(document).encode(), {}


JPEG = imaging.jpeg()
ONE_IMAGE = bytes_elements(np.array([JPEG], dtype=object))
HOSTILE = {
    "empty body": (b"", {}),
    "not JSON": (b"\xff\xfe\x00garbage", {}),
    "a JSON array": _json([]),
    "NaN in JSON": (b'{"inputs": NaN}', {}),
    "a key twice": (b'{"inputs": [], "inputs": []}', {}),
    "nested too deep": (b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", {}),
    "no inputs": _json({}),
    "inputs not a list": _json({"inputs": 5}),
    "no input": _json({"inputs": []}),
    "two inputs": _json({"inputs": [_tensor(data=["x"]), _tensor(data=["y"])]}),
    "input not an object": _json({"inputs": ["image"]}),
    "no name": _json({"inputs": [{"datatype": "BYTES", "shape": [1], "data": ["x"]}]}),
    "a long name": _json({"inputs": [_tensor(name="x" * 300, data=["x"])]}),
    "unknown datatype": _json({"inputs": [_tensor("FP128", data=[1])]}),
    "datatype not a string": _json({"inputs": [_tensor(5, data=[1])]}),
    "shape not a list": _json({"inputs": [_tensor(shape="1", data=["x"])]}),
    "negative shape": _json({"inputs": [_tensor(shape=[-1], data=["x"])]}),
    "boolean shape": _json({"inputs": [_tensor(shape=[True], data=["x"])]}),
    "float shape": _json({"inputs": [_tensor(shape=[1.0], data=["x"])]}),
    "too many dimensions": _json({"inputs": [_tensor(shape=[1] * 9, data=["x"])]}),
    "a huge shape": _json({"inputs": [_tensor(shape=[2 ** 62, 2 ** 62], data=["x"])]}),
    "data and shape disagree": _json({"inputs": [_tensor(shape=[2], data=["x"])]}),
    "ragged data": _json({"inputs": [_tensor("FP32", (2, 2), data=[[1.0], [1.0, 2.0]])]}),
    "data not a list": _json({"inputs": [_tensor(data="x")]}),
    "no data": _json({"inputs": [_tensor()]}),
    "strings for FP32": _json({"inputs": [_tensor("FP32", data=["1"])]}),
    "booleans for INT32": _json({"inputs": [_tensor("INT32", data=[True])]}),
    "fractions for UINT8": _json({"inputs": [_tensor("UINT8", data=[1.5])]}),
    "past UINT8": _json({"inputs": [_tensor("UINT8", data=[300])]}),
    "below UINT8": _json({"inputs": [_tensor("UINT8", data=[-1])]}),
    "past FP32": _json({"inputs": [_tensor("FP32", data=[1e39])]}),
    "infinity": (b'{"inputs": [{"name": "image", "datatype": "FP64", "shape": [1], "data": [1e400]}]}', {}),
    "numbers for BYTES": _json({"inputs": [_tensor(data=[1])]}),
    "numbers for BOOL": _json({"inputs": [_tensor("BOOL", data=[1])]}),
    "a numeric tensor to a model without network tensors": _json({"inputs": [_tensor("FP32", data=[1.0])]}),
    "BYTES of rank 2": _json({"inputs": [_tensor(shape=(1, 1), data=[base64.b64encode(JPEG).decode()])]}),
    "no images": _json({"inputs": [_tensor(shape=(0,), data=[])]}),
    "not base64": _json({"inputs": [_tensor(data=["%%%"])]}),
    "not an image": _json({"inputs": [_tensor(data=[base64.b64encode(b"hello").decode()])]}),
    "another name": _json({"inputs": [_tensor(name="pixels", data=[base64.b64encode(JPEG).decode()])]}),
    "binary size negative": binary_request({"inputs": [_tensor(parameters={"binary_data_size": -1})]}, ONE_IMAGE),
    "binary size a string": binary_request({"inputs": [_tensor(parameters={"binary_data_size": "9"})]}, ONE_IMAGE),
    "binary size a boolean": binary_request({"inputs": [_tensor(parameters={"binary_data_size": True})]}, ONE_IMAGE),
    "binary size past the body": binary_request({"inputs": [_tensor(parameters={"binary_data_size": 10 ** 9})]},
                                                ONE_IMAGE),
    "binary data left over": binary_request({"inputs": [_tensor(parameters={"binary_data_size": len(ONE_IMAGE)})]},
                                            ONE_IMAGE + b"junk"),
    "binary parameters not an object": binary_request({"inputs": [_tensor(parameters=[1])]}, ONE_IMAGE),
    "an element longer than its data": binary_request(
        {"inputs": [_tensor(parameters={"binary_data_size": 8})]}, struct.pack("<I", 2 ** 31) + b"abcd"),
    "an element's length cut off": binary_request({"inputs": [_tensor(parameters={"binary_data_size": 2})]}, b"\x01\x00"),
    "more elements than the shape": binary_request(
        {"inputs": [_tensor(parameters={"binary_data_size": 2 * len(ONE_IMAGE)})]}, ONE_IMAGE * 2),
    "FP32 bytes that do not fill the shape": binary_request(
        {"inputs": [_tensor("FP32", (2,), parameters={"binary_data_size": 4})]}, b"\x00" * 4),
    "NaN in binary FP32": binary_request(
        {"inputs": [_tensor("FP32", (1,), parameters={"binary_data_size": 4})]}, np.float32("nan").tobytes()),
    "header length not a number": (json.dumps({"inputs": []}).encode(), {HEADER_LENGTH: "abc"}),
    "header length negative": (json.dumps({"inputs": []}).encode(), {HEADER_LENGTH: "-5"}),
    "header length zero": (json.dumps({"inputs": []}).encode(), {HEADER_LENGTH: "0"}),
    "header length past the body": (json.dumps({"inputs": []}).encode(), {HEADER_LENGTH: "99999999999999999999999"}),
    "header length in another script": (json.dumps({"inputs": []}).encode(), {HEADER_LENGTH: "١٢"}),
    "header length cutting the JSON": (json.dumps({"inputs": []}).encode(), {HEADER_LENGTH: "5"}),
    "compressed": (b"\x1f\x8b\x08\x00", {"Content-Encoding": "gzip"}),
    "id not a string": _json({"inputs": [_tensor(data=["x"])], "id": 5}),
    "a long id": _json({"inputs": [_tensor(data=["x"])], "id": "x" * 1000}),
    "parameters not an object": _json({"inputs": [_tensor(data=["x"])], "parameters": [1]}),
    "binary_data_output not a boolean": _json({"inputs": [_tensor(data=["x"])], "parameters": {"binary_data_output": "yes"}}),
    "outputs not a list": _json({"inputs": [_tensor(data=["x"])], "outputs": "probabilities"}),
    "outputs empty": _json({"inputs": [_tensor(data=["x"])], "outputs": []}),
    "an output without a name": _json({"inputs": [_tensor(data=["x"])], "outputs": [{}]}),
    "an output twice": _json({"inputs": [_tensor(data=["x"])], "outputs": [{"name": "a"}, {"name": "a"}]}),
    "classification zero": _json({"inputs": [_tensor(data=["x"])],
                                  "outputs": [{"name": "probabilities", "parameters": {"classification": 0}}]}),
    "classification a boolean": _json({"inputs": [_tensor(data=["x"])],
                                       "outputs": [{"name": "probabilities", "parameters": {"classification": True}}]}),
    "binary_data not a boolean": _json({"inputs": [_tensor(data=["x"])],
                                        "outputs": [{"name": "probabilities", "parameters": {"binary_data": 1}}]}),
}
HOSTILE_TO_DETECTOR = {
    "min_score past 1": images_request([JPEG], min_score=2),
    "min_score a boolean": images_request([JPEG], min_score=True),
    "min_score in words": images_request([JPEG], min_score="half"),
    "max_detections zero": images_request([JPEG], max_detections=0),
    "max_detections a fraction": images_request([JPEG], max_detections=1.5),
    "classes a number": images_request([JPEG], classes=5),
    "an unknown output": images_request([JPEG], outputs=[{"name": "probabilities"}]),
    "classification of detections": images_request([JPEG], outputs=[{"name": "detections",
                                                                      "parameters": {"classification": 1}}]),
}


@pytest.mark.parametrize("case", [*HOSTILE, *HOSTILE_TO_DETECTOR])
def test_a_hostile_body_is_a_4xx_in_the_protocol_s_shape_never_a_500(tmp_path, case):
    client = oip_app(tmp_path).test_client()
    body, headers = HOSTILE.get(case) or HOSTILE_TO_DETECTOR[case]
    response = client.post(CLASSIFY if case in HOSTILE else DETECT, data=body, headers=headers)
    assert 400 <= response.status_code < 500, (case, response.get_data(as_text=True))
    oip_error(response, response.status_code)


@pytest.mark.parametrize("tensor,message", [
    ({"name": "x", "datatype": "FP32", "shape": [1, 2, 2, 3]}, "The network's input is 'pixels'"),
    ({"name": "pixels", "datatype": "UINT8", "shape": [1, 2, 2, 3]}, "this one is UINT8"),
    ({"name": "pixels", "datatype": "FP32", "shape": [1, 3, 2, 2]}, "this one has shape [1, 3, 2, 2]"),
    ({"name": "pixels", "datatype": "FP32", "shape": [0, 2, 2, 3]}, "this one has shape [0, 2, 2, 3]"),
    ({"name": "pixels", "datatype": "FP32", "shape": [17, 2, 2, 3]}, "At most 16 images"),
    ({"name": "pixels", "datatype": "FP32", "shape": [2, 2, 3]}, "this one has shape [2, 2, 3]"),
])
def test_a_network_tensor_must_be_what_the_metadata_says(tmp_path, tensor, message):
    client = oip_app(tmp_path, classifier=TensorClassifier()).test_client()
    count = int(np.prod(tensor["shape"]))
    data = [0] * count if tensor["datatype"] == "UINT8" else [0.0] * count
    response = client.post("/v2/models/tensor_classifier/infer", json={"inputs": [{**tensor, "data": data}]})
    assert message in oip_error(response, 400)


# --- the tensors' codec ---------------------------------------------------------------------------

@pytest.mark.parametrize("datatype", [*V2_TYPES, "BYTES"])
@pytest.mark.parametrize("binary", [True, False])
def test_every_datatype_goes_there_and_back(datatype, binary):
    rng = np.random.default_rng(7)
    if datatype == "BYTES":
        array = np.array([b"a", b"", "é".encode(), b"xyz"], dtype=object).reshape(2, 2)
    elif datatype == "BOOL":
        array = rng.integers(0, 2, (2, 3)).astype(bool)
    else:
        array = (rng.random((2, 3)) * 100).astype(V2_TYPES[datatype])
    if datatype == "FP16" and not binary:
        array = array.astype(np.float16)
    entries, raw = write_tensors([("t", array, binary)])
    header = json.loads(json.dumps(entries, default=lambda a: a.tolist()))
    (name, back), = read_tensors(header, memoryview(raw), "output")
    assert name == "t" and back.dtype == array.dtype and np.array_equal(back, array)


def test_a_body_split_where_its_header_says():
    assert split_body(b'{"a":1}xyz', "7") == (b'{"a":1}', memoryview(b"xyz"))
    for bad in ("0", "8", "x", "-1", " ", "1" * 30):
        with pytest.raises(TensorError):
            split_body(b'{"a":1}', bad)


# --- the real server, the real clients ------------------------------------------------------------

CLIENTS = {"triton": ROOT / ".venv-clients" / "bin" / "python", "kserve": ROOT / ".venv-engine" / "bin" / "python"}
KEY = "oip-test-key"
AUTH = {"X-API-Key": KEY}
QUANT, BUILTIN, YOLO = "mobilenet_v2_quant", "mobilenet", "yolov8n_int8"
CLASSIFY_PHOTOS = ["coral/cat.bmp", "coral/parrot.jpg"]
DETECT_PHOTOS = ["darknet/dog.jpg", "ultralytics/bus.jpg"]


def require_client(kind: str) -> Path:
    python = CLIENTS[kind]
    if not python.exists():
        message = f"{python.relative_to(ROOT)} is missing: ./run_tests.sh creates it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return python


@dataclasses.dataclass
class Served:
    url: str
    inputs: dict           # model -> (its network's input name, datatype, .npy of that input for the photos)
    outputs: dict          # model -> its network's output name
    labels: dict           # model -> its labels
    classified: dict       # model -> /v2/classify's results for CLASSIFY_PHOTOS (top 5)
    detected: list         # /v2/detect's results for DETECT_PHOTOS
    quantized: TensorInfo  # the quantized classifier's output, with its scale and zero point from its config


@pytest.fixture(scope="module")
def served(tmp_path_factory, random_weights):
    """`python app.py` with the quantized MobileNetV2 and YOLOv8n folders and the built-in MobileNetV2
    (random weights: the session's files, and its converted-model cache, linked), API keys on;
    what /v2/classify and /v2/detect answer for the photos; each model's network input for them,
    made as the service makes it."""
    require_shared()
    models_dir, work = tmp_path_factory.mktemp("oip-models"), tmp_path_factory.mktemp("oip")
    for name in (QUANT, YOLO):
        build_folder(models_dir, name)
    weights = random_weights(BUILTIN)
    (weights / ".openvino").mkdir(exist_ok=True)
    for shared in ("classify", ".openvino"):
        (models_dir / shared).symlink_to(weights / shared, target_is_directory=True)
    process, url = start_server({"IMAGE_CLASSIFICATION_ENABLED": "true", "IMAGE_CLASSIFICATION_MODEL": f"{QUANT},{BUILTIN}",
                                 "OBJECT_DETECTION_ENABLED": "true", "OBJECT_DETECTION_MODEL": YOLO,
                                 "MODELS_DIR": str(models_dir), "MODEL_DOWNLOAD": "false", "PRELOAD_MODELS": "true",
                                 "API_KEYS": KEY, "MAX_UPLOAD_MB": "32"}, work / "server.log")
    try:
        wait_until(lambda: requests.get(f"{url}/ready", timeout=5).status_code == 200, 240, "the server's models")
        yield _references(url, work)
    finally:
        stop_server(process, work / "server.log")


def _get(url: str, path: str):
    response = requests.get(f"{url}{path}", headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def _post(url: str, path: str, photos: list[str]) -> list:
    files = [("image", (name, photo(name).read_bytes())) for name in photos]
    response = requests.post(f"{url}{path}", files=files, headers=AUTH, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def _references(url: str, work: Path) -> Served:
    meta = {model: _get(url, f"/v2/models/{model}") for model in (QUANT, BUILTIN, YOLO)}
    config = _get(url, f"/v2/models/{QUANT}/config")["parameters"]
    number = lambda key: float(config[key]["string_value"])   # noqa: E731
    quant_in, quant_out = meta[QUANT]["inputs"][0]["name"], meta[QUANT]["outputs"][0]["name"]
    quant_input = TensorInfo(quant_in, (None, 224, 224, 3), np.dtype(np.uint8),
                             number(f"{quant_in}.scale"), int(number(f"{quant_in}.zero_point")))
    batches = {QUANT: quantize(normalise(_stretched(CLASSIFY_PHOTOS), [128] * 3, [128] * 3, "NHWC"), quant_input),
               BUILTIN: _stretched(CLASSIFY_PHOTOS) / np.float32(127.5) - np.float32(1),   # mobilenet_v2's preprocess_input
               YOLO: normalise(_letterboxed(DETECT_PHOTOS[:1]), [0] * 3, [255] * 3, "NHWC")}
    inputs = {}
    for model, batch in batches.items():
        np.save(work / f"{model}.npy", batch)
        tensor = meta[model]["inputs"][0]
        inputs[model] = (tensor["name"], tensor["datatype"], str(work / f"{model}.npy"))
    return Served(url, inputs, {model: meta[model]["outputs"][0]["name"] for model in meta},
                  {model: _get(url, f"/models/{model}/labels")["labels"] for model in (QUANT, BUILTIN, YOLO)},
                  {model: _post(url, f"/v2/classify?model={model}&top_k=5", CLASSIFY_PHOTOS) for model in (QUANT, BUILTIN)},
                  _post(url, f"/v2/detect?model={YOLO}&min_score=0.3", DETECT_PHOTOS),
                  TensorInfo(quant_out, (None, 1001), np.dtype(np.uint8), number(f"{quant_out}.scale"),
                             int(number(f"{quant_out}.zero_point"))))


def _stretched(photos: list[str]) -> np.ndarray:
    """RGB 0-255 resized (bilinear) to 224x224 after a draft decode, as the service feeds its classifiers."""
    images = [decode_image(photo(name).read_bytes(), size_hint=(224, 224)).image for name in photos]
    return np.stack([place(image, (224, 224), "stretch")[0] for image in images])


def _letterboxed(photos: list[str]) -> np.ndarray:
    images = [decode_image(photo(name).read_bytes()).image for name in photos]
    return np.stack([place(image, (640, 640), "letterbox")[0] for image in images])


def run_client(kind: str, url: str, calls: dict[str, dict]) -> dict[str, dict]:
    """Each call's result, by its label, from the client running in its own virtualenv."""
    python = require_client(kind)
    job = json.dumps({"url": url, "headers": AUTH, "calls": list(calls.values())})
    done = subprocess.run([str(python), "-P", str(ROOT / "tests" / "support" / "oip_clients.py"), kind], input=job,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert len(results) == len(calls)
    return dict(zip(calls, results))


def _images_call(model: str, photos: list[str], binary: bool, outputs=None, **parameters) -> dict:
    return {"call": "infer", "model": model, "input": "image", "datatype": "BYTES", "binary": binary,
            "files": [str(photo(name)) for name in photos], "outputs": outputs, "binary_outputs": binary,
            "parameters": parameters or None}


def _tensor_call(served: Served, model: str, binary: bool, outputs=None, to: str | None = None) -> dict:
    """`model`'s network input for the photos, sent to `to` (default: the same model)."""
    name, datatype, path = served.inputs[model]
    return {"call": "infer", "model": to or model, "input": name, "datatype": datatype, "npy": path,
            "binary": binary, "binary_outputs": binary, "outputs": outputs}


def _job(served: Served) -> dict[str, dict]:
    calls = {"live": {"call": "live"}, "ready": {"call": "ready"},
             "model ready": {"call": "model_ready", "model": QUANT},
             "unknown model ready": {"call": "model_ready", "model": "nope"}}
    for binary in (True, False):
        for model in (QUANT, BUILTIN):
            calls[f"{model} images {binary}"] = _images_call(model, CLASSIFY_PHOTOS, binary, [{"name": "probabilities"}])
            calls[f"{model} top 5 {binary}"] = _images_call(model, CLASSIFY_PHOTOS, binary,
                                                            [{"name": "probabilities", "classification": 5}])
            calls[f"{model} tensor {binary}"] = _tensor_call(served, model, binary)
        calls[f"{YOLO} images {binary}"] = _images_call(YOLO, DETECT_PHOTOS, binary, min_score=0.3)
    calls[f"{QUANT} tensor top 5"] = _tensor_call(served, QUANT, True, [{"name": served.outputs[QUANT],
                                                                         "classification": 5}])
    calls[f"{YOLO} tensor"] = _tensor_call(served, YOLO, True)   # 4.9 MB of float32: binary only
    calls["wrong datatype"] = _tensor_call(served, BUILTIN, True, to=QUANT)
    return calls


def _array(output: dict) -> np.ndarray:
    return np.array(output["data"], dtype=object if output["datatype"] == "BYTES" else None).reshape(output["shape"])


def assert_classified(probabilities: np.ndarray, expected: list, labels: list[str]) -> None:
    """Each row's top 5 are /v2/classify's labels in its order, with its scores within 1e-4."""
    assert probabilities.shape == (len(expected), len(labels))
    for row, result in zip(probabilities, expected):
        top = np.argsort(-row, kind="stable")[:5]
        assert [labels[i] for i in top] == [p["label"] for p in result["predictions"]]
        assert np.allclose(row[top], [p["score"] for p in result["predictions"]], atol=1e-4)


def assert_top5(strings: np.ndarray, expected: list, labels: list[str], dequantize=float) -> None:
    """The classification extension's "value:index:label" strings against /v2/classify's top 5."""
    for row, result in zip(strings, expected):
        parsed = [text.split(":", 2) for text in row]
        assert [label for _, _, label in parsed] == [p["label"] for p in result["predictions"]]
        assert [labels[int(index)] for _, index, _ in parsed] == [label for _, _, label in parsed]
        assert np.allclose([dequantize(value) for value, _, _ in parsed],
                           [p["score"] for p in result["predictions"]], atol=1e-4)


def assert_detected(outputs: dict, expected: list, labels: list[str]) -> None:
    """Per image, /v2/detect's labels and boxes in its order, its scores within 1e-4."""
    detections, names, counts = (_array(outputs[key]) for key in ("detections", "labels", "num_detections"))
    assert counts.tolist() == [len(result["detections"]) for result in expected] and min(counts) > 0
    for boxes, row, count, result in zip(detections, names, counts, expected):
        want = result["detections"]
        assert row[:count].tolist() == [d["label"] for d in want]
        assert [labels[int(index)] for index in boxes[:count, 5]] == [d["label"] for d in want]
        assert boxes[:count, :4].tolist() == [[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in want]
        assert np.allclose(boxes[:count, 4], [d["score"] for d in want], atol=1e-4)
        assert (boxes[count:, 5] == -1).all() and (row[count:] == "").all()


def yolo_detections(output: np.ndarray, photo_name: str, labels: list[str]) -> list[dict]:
    """YOLOv8n's raw output for one photo decoded as the folder detector decodes it
    (detectors/folder.py with the folder's model.json), in /v2/detect's shape."""
    image = decode_image(photo(photo_name).read_bytes()).image
    boxes, scores, classes = decode(output, "yolov8", len(labels), "normalized", (640, 640), 0.3)
    keep = nms(boxes, scores, classes, 0.45)
    placed = place(image, (640, 640), "letterbox")[1].to_image(boxes[keep])
    found = [{"label": labels[int(c)], "score": float(s), "box": dict(zip(("x1", "y1", "x2", "y2"),
                                                                          (int(round(v)) for v in box)))}
             for box, s, c in zip(placed, scores[keep], classes[keep])]
    return sorted(found, key=lambda d: d["score"], reverse=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["triton", "kserve"])
def test_a_real_client_reads_what_v2_classify_and_v2_detect_answer(served, kind):
    """tritonclient[http] and KServe's InferenceRESTClient, unmodified: health as each reads it; the
    same classes, scores and boxes from encoded images and from the networks' own tensors, JSON and
    binary, as /v2/classify and /v2/detect give for the same photos."""
    results = run_client(kind, served.url, _job(served))
    errors = {label: result["error"] for label, result in results.items() if "error" in result}
    assert set(errors) == {"wrong datatype"}, errors
    value = {label: result.get("value") for label, result in results.items()}
    assert value["live"] is True and value["ready"] is True and value["model ready"] is True
    assert value["unknown model ready"] is False
    for binary in (True, False):
        for model in (QUANT, BUILTIN):
            outputs = value[f"{model} images {binary}"]["outputs"]
            assert value[f"{model} images {binary}"]["model_name"] == model and list(outputs) == ["probabilities"]
            assert_classified(_array(outputs["probabilities"]), served.classified[model], served.labels[model])
            top5 = _array(value[f"{model} top 5 {binary}"]["outputs"]["probabilities"])
            assert top5.shape == (2, 5)
            assert_top5(top5, served.classified[model], served.labels[model])
        quantized = _array(value[f"{QUANT} tensor {binary}"]["outputs"][served.outputs[QUANT]])
        assert quantized.shape == (2, 1001)
        assert_classified(dequantize(quantized.astype(np.uint8), served.quantized).astype(np.float64),
                          served.classified[QUANT], served.labels[QUANT])
        assert_classified(_array(value[f"{BUILTIN} tensor {binary}"]["outputs"][served.outputs[BUILTIN]]),
                          served.classified[BUILTIN], served.labels[BUILTIN])
        assert_detected(value[f"{YOLO} images {binary}"]["outputs"], served.detected, served.labels[YOLO])
    info = served.quantized
    assert_top5(_array(value[f"{QUANT} tensor top 5"]["outputs"][served.outputs[QUANT]]), served.classified[QUANT],
                served.labels[QUANT], dequantize=lambda q: (int(q) - info.zero_point) * info.scale)
    raw = _array(value[f"{YOLO} tensor"]["outputs"][served.outputs[YOLO]]).astype(np.float32)
    assert raw.shape == (1, 84, 8400)
    found = yolo_detections(raw[0], DETECT_PHOTOS[0], served.labels[YOLO])
    want = served.detected[0]["detections"]
    assert [(d["label"], d["box"]) for d in found] == [(d["label"], d["box"]) for d in want]
    assert np.allclose([d["score"] for d in found], [d["score"] for d in want], atol=1e-4)
    assert "is UINT8" in errors["wrong datatype"] and "this one is FP32" in errors["wrong datatype"]


@pytest.mark.slow
def test_tritonclient_reads_the_metadata_and_the_configuration(served):
    """What get_server_metadata, get_model_metadata and get_model_config give (tritonclient only:
    KServe's REST client has no such calls)."""
    calls = {"server": {"call": "server_metadata"}, "metadata": {"call": "model_metadata", "model": QUANT, "version": "1"},
             "config": {"call": "model_config", "model": BUILTIN}}
    value = {label: result.get("value") for label, result in run_client("triton", served.url, calls).items()}
    assert "binary_tensor_data" in value["server"]["extensions"] and "classification" in value["server"]["extensions"]
    metadata = value["metadata"]
    assert metadata["name"] == QUANT and metadata["versions"] == ["1"] and metadata["platform"] == "litert"
    assert metadata["inputs"] == [{"name": served.inputs[QUANT][0], "datatype": "UINT8", "shape": [-1, 224, 224, 3]},
                                  {"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in metadata["outputs"]] == [served.outputs[QUANT], "probabilities"]
    config = value["config"]
    assert config["input"][0] == {"name": "input", "data_type": "TYPE_FP32", "dims": [224, 224, 3]}
    assert "mobilenet_v2.preprocess_input" in config["parameters"]["network_input"]["string_value"]


@pytest.mark.slow
def test_built_in_yolo_offers_its_network_whose_raw_output_decodes_to_v2_detect_s_boxes(random_weights):
    """TinyYOLOv3 (random weights): its letterboxed input in, ImageAI's detection layers' output
    back, which ImageAI's own thresholds and NMS (imageai_yolo.detect) turn into /v2/detect's boxes."""
    from detectors import imageai_yolo

    client = create_app(Settings(detection_enabled=True, detection_models=("tiny_yolo",),
                                 models_dir=random_weights("tiny_yolo"), model_download=False)).test_client()
    meta = client.get("/v2/models/tiny_yolo").get_json()
    assert meta["inputs"][0] == {"name": "images", "datatype": "FP32", "shape": [-1, 3, 416, 416]}
    assert meta["outputs"][0] == {"name": "output", "datatype": "FP32", "shape": [-1, -1, 85]}
    data = photo("darknet/dog.jpg").read_bytes()
    rgb = np.asarray(decode_image(data).image)
    batch = imageai_yolo.letterboxed(rgb)
    tensor = {"name": "images", "datatype": "FP32", "shape": list(batch.shape), "parameters": {"binary_data_size": batch.nbytes}}
    body, headers = binary_request({"inputs": [tensor], "parameters": {"binary_data_output": True}}, batch.tobytes())
    raw = outputs_of(client.post("/v2/models/tiny_yolo/infer", data=body, headers=headers))["output"]
    assert raw.shape[0] == 1 and raw.shape[2] == 85
    labels = client.get("/models/tiny_yolo/labels").get_json()["labels"]
    found = imageai_yolo.detect(lambda inputs: raw, labels, [rgb], 0.3)[0]   # the steps after the network
    height, width = rgb.shape[:2]
    found = sorted(((label, score, [min(max(v, 0), side) for v, side in zip(box, (width, height, width, height))])
                    for label, score, box in found), key=lambda d: d[1], reverse=True)
    expected = post_images(client, "/v2/detect?min_score=0.3", data).get_json()["results"][0]["detections"]
    assert len(found) == len(expected) > 0
    assert [(label, box) for label, _, box in found] == \
        [(d["label"], [d["box"][k] for k in ("x1", "y1", "x2", "y2")]) for d in expected]
    assert np.allclose([score for _, score, _ in found], [d["score"] for d in expected], atol=1e-4)


class NaNClassifier(FakeClassifier):
    def predict(self, images):
        return np.full((len(images), 3), np.nan)


def test_a_model_answering_nan_is_a_500_in_the_protocol_s_shape(tmp_path):
    client = oip_app(tmp_path, classifier=NaNClassifier()).test_client()
    body, headers = images_request([imaging.jpeg()])
    assert oip_error(client.post(CLASSIFY, data=body, headers=headers), 500) == "The model failed while processing this image."
