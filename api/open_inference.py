"""The Open Inference Protocol (KServe V2) served for every configured model, so the clients of
Triton, KServe and OpenVINO Model Server (tritonclient, KServe's InferenceRESTClient) call this
service as they call those servers. docs/open-inference.md says what each route takes.

- health: /v2/health/live and /v2/health/ready answer 200 or 503 with {"live"|"ready": bool}
  (KServe's client reads the body, Triton's the status); /v2/models/<m>[/versions/1]/ready is the
  model's slot's readiness. The three need no API key, like /health and /ready.
- metadata: /v2 (the server and its extensions), /v2/models/<m>[/versions/1] (its tensors) and
  .../config (Triton's model configuration, with how the network's input is made).
- inference: POST .../infer with one input. An input of datatype BYTES holds encoded images
  (OpenVINO Model Server's convention): they go through our decoding and the data plane (limits,
  cache for detections, micro-batching, time limit) and are answered with our outputs. An input
  of a numeric datatype is the network's own tensor (contract.Model.network_tensors), answered
  with the network's own outputs. The classification extension turns a [batch, classes] output
  into "score:index:label" strings.

Errors are the protocol's {"error": "message"}. Tensors are read and written by
runtimes/open_inference_tensors.py, which our client of remote engines shares.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import orjson
from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from api import answers
from api.errors import http_error_message
from api.inference import admitted, client_gone
from api.middleware import log_fields
from api.operations import not_ready
from api.parsing import base64_image, parse_json, plain_number
from contract import CLASSIFICATION, Model, NetworkTensors
from dataplane.sources import ImageSource
from errors import ApiError, InvalidParameter, ModelNotFound, UnsupportedMediaType, echo
from registry import ModelSlot
from runtimes.open_inference_tensors import (
    BINARY_EXTENSION,
    BYTES,
    HEADER_LENGTH,
    TensorError,
    finite,
    read_tensors,
    shown,
    split_body,
    v2_name,
    write_tensors,
)

log = logging.getLogger(__name__)
bp = Blueprint("open_inference", __name__)

SERVER = {"name": "image-classification-service", "version": "1.0.0",
          "extensions": [BINARY_EXTENSION, "classification", "model_configuration"]}
VERSION = "1"                  # every configured model has this one version
IMAGE_INPUT = "image"          # the BYTES input of encoded images
ROUTE = "/v2/models/<name>/infer"   # how the report names every model's inference route
PROBABILITIES = "probabilities"
DETECTIONS, LABELS, COUNTS = "detections", "labels", "num_detections"
MAX_CLASSIFICATION = 10_000
MAX_ID_CHARS = 256


# --- errors: the protocol's {"error": "message"} ------------------------------------------------

def _error(code: int, message: str, headers: dict | None = None) -> Response:
    response = jsonify(error=message)
    response.status_code = code
    response.headers.update(headers or {})
    return response


@bp.errorhandler(ApiError)
def _api_error(err: ApiError):
    return _error(err.code, err.message, err.headers)


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException):
    return _error(err.code or 500, http_error_message(err, current_app.config["MAX_UPLOAD_MB"]))


@bp.errorhandler(Exception)
def _unexpected(err: Exception):
    log.exception("unhandled error while serving an Open Inference Protocol request")
    return _error(500, ApiError.message)


# --- health and metadata ------------------------------------------------------------------------

@bp.get("/v2/health/live")
def live():
    return jsonify(live=True)


@bp.get("/v2/health/ready")
def server_ready():
    reason = not_ready()
    if reason is not None:
        return jsonify(ready=False, error=reason["error"]["message"]), 503
    return jsonify(ready=True)


@bp.get("/v2")
def server_metadata():
    return jsonify(SERVER)


@bp.get("/v2/models/<name>/ready")
@bp.get("/v2/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):
    slot = _slot(name, version)
    if slot.ready:
        return jsonify(name=name, ready=True)
    return jsonify(name=name, ready=False, error=f"Model '{name}' is not ready ({slot.state})."), 503


@bp.get("/v2/models/<name>")
@bp.get("/v2/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None):
    """The model's inputs and outputs, once it is loaded (a folder's tensors come from its file)."""
    model = _slot(name, version).ensure_loaded()
    inputs, outputs = _offered(model)
    return jsonify(name=name, versions=[VERSION], platform=model.runtime, inputs=inputs, outputs=outputs)


@bp.get("/v2/models/<name>/config")
@bp.get("/v2/models/<name>/versions/<version>/config")
def model_config(name: str, version: str | None = None):
    """Triton's model configuration (model_config.proto as JSON): tensors without the batch
    dimension, the batch limit, and in `parameters` what a client needs to feed the network."""
    model = _slot(name, version).ensure_loaded()
    inputs, outputs = _offered(model)
    parameters = {"task": model.task, "labels": f"/models/{name}/labels",
                  "image_input": f"'{IMAGE_INPUT}': BYTES [N] encoded images (JPEG, PNG, BMP, GIF, WEBP, TIFF), "
                                 f"answered with {', '.join(o['name'] for o in _our_outputs(model))}"}
    network = model.network_tensors()
    parameters["network_input"] = network.preprocessing if network else "not offered: send encoded images"
    for info in (network.input, *network.outputs) if network else ():
        if info.quantized:
            parameters.update({f"{info.name}.scale": repr(info.scale), f"{info.name}.zero_point": str(info.zero_point)})
    return jsonify(name=name, platform=model.runtime, versions=[VERSION],
                   max_batch_size=current_app.extensions["settings"].max_request_images,
                   input=[_config_tensor(t) for t in inputs], output=[_config_tensor(t) for t in outputs],
                   parameters={key: {"string_value": value} for key, value in parameters.items()})


def _slot(name: str, version: str | None) -> ModelSlot:
    slot = current_app.extensions["registry"].get(name)
    if version is not None and version != VERSION:
        raise ModelNotFound(f"Model '{echo(name)}' has no version '{echo(version)}'; its one version is {VERSION}.")
    return slot


def _tensor(name: str, datatype: str, shape) -> dict:
    return {"name": name, "datatype": datatype, "shape": [-1 if d is None else d for d in shape]}


def _our_outputs(model: Model) -> list[dict]:
    """What the BYTES input of encoded images is answered with, per task."""
    if model.task == CLASSIFICATION:
        return [_tensor(PROBABILITIES, "FP32", (None, len(model.labels)))]
    return [_tensor(DETECTIONS, "FP32", (None, None, 6)), _tensor(LABELS, BYTES, (None, None)),
            _tensor(COUNTS, "INT32", (None,))]


def _offered(model: Model) -> tuple[list[dict], list[dict]]:
    """(inputs, outputs) as the metadata lists them: the network's own tensors where the model
    offers them, then the encoded-images input and our outputs."""
    inputs, outputs = [_tensor(IMAGE_INPUT, BYTES, (None,))], _our_outputs(model)
    network = model.network_tensors()
    if network is not None:
        own = [_tensor(network.input.name, v2_name(network.input.dtype), network.input.shape)]
        inputs = own + [t for t in inputs if t["name"] != network.input.name]
        outputs = [_tensor(o.name, v2_name(o.dtype), o.shape) for o in network.outputs] + outputs
    return inputs, outputs


def _config_tensor(tensor: dict) -> dict:
    datatype = "STRING" if tensor["datatype"] == BYTES else tensor["datatype"]
    return {"name": tensor["name"], "data_type": f"TYPE_{datatype}", "dims": tensor["shape"][1:] or [1]}


# --- inference ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Wanted:
    name: str
    binary: bool
    classification: int | None


@dataclasses.dataclass(frozen=True)
class _Request:
    id: str | None
    input: str
    array: np.ndarray
    binary_input: bool
    wanted: tuple[_Wanted, ...] | None   # None: every output
    binary_output: bool                  # the request's default (binary_data_output)
    parameters: dict


@bp.post("/v2/models/<name>/infer")
@bp.post("/v2/models/<name>/versions/<version>/infer")
@admitted
def infer(name: str, version: str | None = None):
    slot = _slot(name, version)
    req = _read_request()
    model = slot.ensure_loaded()
    if req.array.dtype == np.dtype(object):
        outputs = _from_images(slot, req)
    else:
        outputs = _from_network(slot, req)
    return _answer(name, req, outputs, model.labels)


def _read_request() -> _Request:
    """The body: a JSON header, perhaps binary tensor data after it; every problem a 400 (413 past
    MAX_UPLOAD_MB, 415 for a compressed body: nothing is inflated)."""
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        raise UnsupportedMediaType("Compressed request bodies (Content-Encoding) are not accepted; send it as it is.")
    body = request.get_data(cache=False)
    try:
        head, raw = split_body(body, request.headers.get(HEADER_LENGTH))
        doc = parse_json(head)
        if not isinstance(doc, dict):
            raise TensorError("the body's JSON header must be an object")
        parameters = _object(doc.get("parameters"), "The request's 'parameters'")
        tensors = read_tensors(doc.get("inputs"), raw, "input")
        for tensor_name, array in tensors:
            finite(array, f"input '{shown(tensor_name)}'")
    except TensorError as exc:
        raise InvalidParameter(f"The request is not one the Open Inference Protocol allows: {exc}.") from None
    if len(tensors) != 1:
        raise InvalidParameter(f"Send exactly one input tensor; this request has {len(tensors)}.")
    request_id = doc.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > MAX_ID_CHARS):
        raise InvalidParameter(f"'id' must be a string of at most {MAX_ID_CHARS} characters.")
    binary_output = _flag(parameters, "binary_data_output", False, "The request's 'parameters'")
    (input_name, array), = tensors
    binary_input = _object(doc["inputs"][0].get("parameters"), "").get("binary_data_size") is not None
    return _Request(request_id, input_name, array, binary_input, _wanted(doc.get("outputs"), binary_output),
                    binary_output, parameters)


def _object(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameter(f"{where} must be a JSON object.")
    return value


def _flag(parameters: dict, key: str, default: bool, where: str) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise InvalidParameter(f"{where}: '{key}' must be true or false.")
    return value


def _wanted(items, binary_output: bool) -> tuple[_Wanted, ...] | None:
    """The requested outputs: each one's name, binary or JSON, and the classification extension's k."""
    if items is None:
        return None
    if not isinstance(items, list) or not items:
        raise InvalidParameter("'outputs' must be a non-empty list of {\"name\": ...} objects, or left out.")
    wanted, names = [], set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or item["name"] in names:
            raise InvalidParameter("Each of 'outputs' must be an object with a 'name', each name once.")
        where = f"Output '{shown(item['name'])}'"
        parameters = _object(item.get("parameters"), f"{where}: 'parameters'")
        k = parameters.get("classification")
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_CLASSIFICATION):
            raise InvalidParameter(f"{where}: 'classification' must be a whole number from 1 to {MAX_CLASSIFICATION}.")
        wanted.append(_Wanted(item["name"], _flag(parameters, "binary_data", binary_output, where), k))
        names.add(item["name"])
    return tuple(wanted)


def _from_images(slot: ModelSlot, req: _Request) -> dict[str, np.ndarray]:
    """A BYTES input of encoded images (binary: the files' bytes; JSON: their base64 text),
    through the data plane as /v2/classify and /v2/detect take them."""
    network = slot.model.network_tensors()
    names = {IMAGE_INPUT, network.input.name} if network else {IMAGE_INPUT}
    if req.input not in names:
        raise InvalidParameter(f"Input '{shown(req.input)}' is BYTES: encoded images go in the input "
                               f"'{IMAGE_INPUT}'.")
    count, limit = req.array.size, current_app.extensions["settings"].max_request_images
    if req.array.ndim != 1 or not 1 <= count <= limit:
        raise InvalidParameter(f"The BYTES input of encoded images has shape [N], N from 1 to {limit} "
                               f"(MAX_IMAGES_PER_REQUEST); this one is {list(req.array.shape)}.")
    sources = [_source(element, index, req.binary_input) for index, element in enumerate(req.array)]
    pipeline = current_app.extensions["pipeline"]
    if slot.task == CLASSIFICATION:
        _, results = pipeline.probabilities(sources, model=slot.name, route=ROUTE, gone=client_gone())
    else:
        min_score, max_detections, classes = _detection_parameters(req.parameters)
        _, results = pipeline.detect(sources, model=slot.name, min_score=min_score, max_detections=max_detections,
                                     classes=classes, route=ROUTE, gone=client_gone())
    answers.log_batch(slot.name, results)
    for index, result in enumerate(results):
        if result.error is not None:
            raise _for_image(result.error, index, count)
    if slot.task == CLASSIFICATION:
        return {PROBABILITIES: _probabilities(slot.model, [r.value for r in results])}
    return _detections(slot.model, [r.value for r in results])


def _source(element: bytes, index: int, binary: bool) -> ImageSource:
    if binary:
        return ImageSource.of_bytes(element)
    try:
        return ImageSource.of_bytes(base64_image(element.decode("utf-8", "surrogatepass"), f"Image {index} (JSON: base64)"))
    except ApiError as err:
        return ImageSource.failed(err)


def _for_image(err: ApiError, index: int, count: int) -> ApiError:
    """One image's error as the request's (the protocol answers a request whole), naming the image."""
    if count == 1:
        return err
    failure = ApiError(f"Image {index}: {err.message}", headers=err.headers)
    failure.code, failure.type = err.code, err.type
    return failure


def _detection_parameters(parameters: dict) -> tuple[float, int | None, frozenset[str] | None]:
    """min_score (default 0.3, as /v2/detect), max_detections and classes from the request's parameters."""
    min_score = _number(parameters, "min_score", 0.3, 1.0, whole=False)
    max_detections = _number(parameters, "max_detections", None, 10_000, whole=True)
    classes = parameters.get("classes")
    if isinstance(classes, str):
        classes = classes.split(",")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise InvalidParameter("'classes' must be a comma-separated string or a list of labels.")
    kept = frozenset(c.strip() for c in classes or () if c.strip())
    return min_score, max_detections, kept or None


def _number(parameters: dict, key: str, default, maximum, *, whole: bool):
    """A number parameter: a JSON number, or one written as /v2/detect's query takes it."""
    value = parameters.get(key)
    if value is None:
        return default
    if isinstance(value, str) and plain_number(value, whole=whole):
        value = int(value) if whole else float(value)
    minimum = 1 if whole else 0
    kinds = (int,) if whole else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool) or not minimum <= value <= maximum:
        kind = "a whole number" if whole else "a number"
        raise InvalidParameter(f"Parameter '{key}' must be {kind} from {minimum} to {maximum:g}.")
    return value


def _probabilities(model: Model, ranked: list[list]) -> np.ndarray:
    """[N, classes] FP32: each class's probability at its index (ranked rows put back in place)."""
    index_of = {class_id: i for i, class_id in enumerate(model.class_ids)}
    rows = np.zeros((len(ranked), len(model.labels)), dtype=np.float32)
    for row, value in zip(rows, ranked):
        for _, class_id, score in value:
            row[index_of[class_id]] = score
    return rows


def _detections(model: Model, found: list[list]) -> dict[str, np.ndarray]:
    """detections FP32 [N, K, 6] (x1, y1, x2, y2 in the image's pixels, score, class index; K the
    most any image has, highest score first, the rest padded with zeros and class -1), labels
    BYTES [N, K] (padding: empty), num_detections INT32 [N]."""
    index_of: dict[str, int] = {}
    for index, label in enumerate(model.labels):
        index_of.setdefault(label, index)
    width = max((len(value) for value in found), default=0)
    boxes = np.zeros((len(found), width, 6), dtype=np.float32)
    boxes[..., 5] = -1
    labels = np.full((len(found), width), b"", dtype=object)
    for i, value in enumerate(found):
        for j, d in enumerate(value):
            boxes[i, j] = (*d.box, d.score, index_of[d.label])
            labels[i, j] = d.label.encode("utf-8")
    return {DETECTIONS: boxes, LABELS: labels, COUNTS: np.array([len(v) for v in found], dtype=np.int32)}


def _from_network(slot: ModelSlot, req: _Request) -> dict[str, np.ndarray]:
    """The network's own input tensor, checked against what it takes, run as one call."""
    network = slot.model.network_tensors()
    if network is None:
        raise InvalidParameter(f"Model '{slot.name}' offers no tensor of its network: send encoded images "
                               f"as the BYTES input '{IMAGE_INPUT}'.")
    _check_network_input(network, req)
    started = time.perf_counter()
    arrays = slot.infer_tensors(req.array, gone=client_gone())
    seconds, count = time.perf_counter() - started, len(req.array)
    g.server_timing = (0.0, seconds)
    log_fields(model=slot.name, images=count, cache_hit=False, processing_ms=round(seconds * 1000, 2))
    report = current_app.extensions["report"]
    for _ in range(count):
        report.record(image_key=None, model=slot.name, route=ROUTE, seconds=seconds / count)
    return {info.name: array for info, array in zip(network.outputs, arrays)}


def _check_network_input(network: NetworkTensors, req: _Request) -> None:
    info, array = network.input, req.array
    expected = f"{v2_name(info.dtype)} {_tensor('', '', info.shape)['shape']}"
    if req.input != info.name:
        raise InvalidParameter(f"The network's input is '{info.name}' ({expected}), not '{shown(req.input)}'; "
                               f"encoded images go in the BYTES input '{IMAGE_INPUT}'.")
    if array.dtype != info.dtype:
        raise InvalidParameter(f"Input '{info.name}' is {expected}; this one is {v2_name(array.dtype)}.")
    limit = current_app.extensions["settings"].max_request_images
    if (array.ndim != len(info.shape) or 0 in array.shape
            or any(d is not None and d != got for d, got in zip(info.shape[1:], array.shape[1:]))):
        raise InvalidParameter(f"Input '{info.name}' is {expected}; this one has shape {list(array.shape)}.")
    if len(array) > limit:
        raise InvalidParameter(f"At most {limit} images per request (MAX_IMAGES_PER_REQUEST); this one has "
                               f"{len(array)}.")


def _answer(name: str, req: _Request, outputs: dict[str, np.ndarray], labels) -> Response:
    """The protocol's response: the wanted outputs in JSON, or binary after the JSON header."""
    chosen = []
    for wanted in req.wanted or [_Wanted(key, req.binary_output, None) for key in outputs]:
        if wanted.name not in outputs:
            raise InvalidParameter(f"There is no output '{shown(wanted.name)}' for this input; it answers "
                                   f"{', '.join(outputs)}.")
        array = outputs[wanted.name]
        if wanted.classification:
            array = _classified(array, wanted.classification, labels, wanted.name)
        chosen.append((wanted.name, array, wanted.binary))
    try:
        entries, raw = write_tensors(chosen)
    except TensorError as exc:
        raise InvalidParameter(f"The network's {exc}, which JSON cannot carry: ask for it as binary data.") from None
    doc = {"model_name": name, "model_version": VERSION, "outputs": entries}
    if req.id is not None:
        doc["id"] = req.id
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not any(binary for _, _, binary in chosen):
        return Response(head, content_type="application/json")
    response = Response(head + raw, content_type="application/octet-stream")
    response.headers[HEADER_LENGTH] = str(len(head))
    return response


def _classified(array: np.ndarray, k: int, labels, name: str) -> np.ndarray:
    """The classification extension: BYTES [N, k] of "value:index[:label]", highest value first,
    the values as the output holds them (a quantized network's integers)."""
    if array.ndim != 2 or array.dtype == np.dtype(object):
        raise InvalidParameter(f"Output '{shown(name)}': the classification extension takes an output of shape "
                               f"[batch, classes]; this one is {v2_name(array.dtype)} {list(array.shape)}.")
    k = min(k, array.shape[1])
    named = array.shape[1] == len(labels)
    order = np.argsort(-array.astype(np.float64), axis=1, kind="stable")[:, :k]
    out = np.empty(order.shape, dtype=object)
    for i, row in enumerate(order):
        for j, index in enumerate(row):
            value = array[i, index]
            text = np.format_float_positional(value, trim="-") if array.dtype.kind == "f" else str(int(value))
            out[i, j] = f"{text}:{index}{':' + labels[index] if named else ''}".encode("utf-8")
    return out
