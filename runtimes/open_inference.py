"""The Open Inference Protocol (KServe V2), spoken by NVIDIA Triton, KServe, OpenVINO Model
Server and Seldon MLServer.

The shapes, as kserve's docs/predict-api/v2/required_api.md, its server
(python/kserve/kserve/protocol/rest/v2_endpoints.py, protocol/infer_type.py) and Triton's
docs/protocol/extension_binary_data.md define them:
- readiness: `GET /v2/models/<m>[/versions/<v>]/ready`, 200 ready, 4xx not (the body may be empty)
- metadata: `GET /v2` (the server's `extensions`), `GET /v2/models/<m>[/versions/<v>]`
  (`inputs`/`outputs`: name, datatype, shape with -1 for a variable dimension)
- inference: `POST .../infer` with `{"inputs": [{"name", "shape", "datatype", "data"}]}`, data
  flat in row-major order. With the binary tensor extension the JSON header is followed by the
  raw little-endian tensor: `Inference-Header-Content-Length` gives the header's length,
  `binary_data_size` each tensor's bytes, and `binary_data_output` asks for binary outputs.
"""
from __future__ import annotations

import numpy as np
import orjson

from runtimes.base import TensorInfo
from runtimes.remote import FAILED, NOT_READY, EngineProblem, RemoteExecutor, expect_ok, malformed, parse_json, url_path

V2_TYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
_V2_NAMES = {np.dtype(t): name for name, t in V2_TYPES.items()}
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_EXTENSION = "binary_tensor_data"   # what Triton lists in its server metadata's extensions
_INFER = "the inference request"


class KServeV2Executor(RemoteExecutor):
    binary = False   # the binary tensor extension, decided once when the model is opened

    @property
    def _model_path(self) -> str:
        path = url_path("v2", "models", self.target.model)
        return path + url_path("versions", self.target.version) if self.target.version else path

    def probe(self) -> None:
        # The model's own readiness: Triton's server-wide /v2/health/ready can be false while
        # another model it hosts is not (--strict-readiness), which says nothing about this one.
        response = self.engine.call("GET", self._model_path + "/ready", "the model readiness check")
        status = response.status_code
        if 400 <= status < 500 or status == 503:
            raise EngineProblem(NOT_READY, f"says the model is not ready (HTTP {status})")
        expect_ok(response, "the model readiness check")

    def _describe(self, size, layout) -> tuple[TensorInfo, list[TensorInfo]]:
        what = "the model metadata request"
        meta = self.engine.json("GET", self._model_path, what)
        inputs, outputs = meta.get("inputs"), meta.get("outputs")
        if not isinstance(inputs, list) or not isinstance(outputs, list) or not outputs:
            raise malformed(what)
        if len(inputs) != 1:
            raise ValueError(f"the model has {len(inputs)} inputs; one image input is supported")
        self.binary = self._binary_wanted()
        return metadata_tensor(inputs[0], what), [metadata_tensor(item, what) for item in outputs]

    def _binary_wanted(self) -> bool:
        if self.target.encoding != "auto":
            return self.target.encoding == "binary"
        try:
            server = self.engine.json("GET", "/v2", "the server metadata request")
        except EngineProblem:
            return False
        extensions = server.get("extensions")
        return isinstance(extensions, list) and BINARY_EXTENSION in extensions

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        tensor = {"name": self.input.name, "shape": list(batch.shape), "datatype": v2_name(batch.dtype)}
        if self.binary:
            raw = np.ascontiguousarray(batch, batch.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            header = orjson.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}})
            body = header + raw
            headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
        else:
            tensor["data"] = np.ascontiguousarray(batch).ravel()
            body = orjson.dumps({"inputs": [tensor]}, option=orjson.OPT_SERIALIZE_NUMPY)
            headers = {"Content-Type": "application/json"}
        response = self.engine.call("POST", self._model_path + "/infer", _INFER, body=body, headers=headers)
        expect_ok(response, _INFER)
        answers = _read_outputs(response.content, response.headers.get(HEADER_LENGTH))
        missing = [o.name for o in self.outputs if o.name not in answers]
        if missing:
            raise EngineProblem(FAILED, f"answered {_INFER} without output '{missing[0]}'")
        return [answers[o.name] for o in self.outputs]


def v2_name(dtype: np.dtype) -> str:
    """The protocol's name of a numpy data type (UINT8, FP32, ...)."""
    return _V2_NAMES[np.dtype(dtype)]


def metadata_tensor(item, what: str) -> TensorInfo:
    """A metadata tensor: name, datatype, shape (-1 variable)."""
    if not isinstance(item, dict):
        raise malformed(what)
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if (not isinstance(name, str) or not isinstance(shape, list)
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)):
        raise malformed(what)
    if datatype not in V2_TYPES:
        raise ValueError(f"tensor '{name[:64]}' has data type {str(datatype)[:16]!r}; "
                         f"supported: {', '.join(V2_TYPES)}")
    return TensorInfo(name, tuple(d if d >= 0 else None for d in shape), np.dtype(V2_TYPES[datatype]))


def _read_outputs(content: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    """The answer's output tensors by name, from JSON data or the binary data after the header."""
    try:
        split = int(header_length) if header_length is not None else len(content)
        if not 0 < split <= len(content):
            raise ValueError("header length outside the body")
        head = parse_json(content[:split], _INFER)
        items, raw = head.get("outputs"), memoryview(content)[split:]
        if not isinstance(items, list):
            raise ValueError("no outputs")
        arrays, offset = {}, 0
        for item in items:
            dtype = np.dtype(V2_TYPES[item["datatype"]])
            shape = [int(d) for d in item["shape"]]
            size = (item.get("parameters") or {}).get("binary_data_size")
            if size is None:
                array = np.asarray(item["data"], dtype=dtype)
            else:
                chunk = raw[offset:offset + int(size)]
                offset += int(size)
                array = np.frombuffer(chunk, dtype.newbyteorder("<")).astype(dtype)
            arrays[str(item["name"])] = array.reshape(shape)
        if offset != len(raw):
            raise ValueError("binary data left over")
        return arrays
    except (ValueError, TypeError, KeyError, AttributeError):
        raise malformed(_INFER) from None
