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
from runtimes.open_inference_tensors import (
    BINARY_EXTENSION,
    HEADER_LENGTH,
    V2_TYPES,
    TensorError,
    read_tensors,
    split_body,
    v2_name,
)
from runtimes.remote import FAILED, NOT_READY, EngineProblem, RemoteExecutor, expect_ok, malformed, parse_json, url_path

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
    """The answer's output tensors by name, from JSON data or the binary data after the header
    (runtimes/open_inference_tensors.py reads them, as our own server reads its inputs)."""
    try:
        head, raw = split_body(content, header_length)
        outputs = read_tensors(parse_json(head, _INFER).get("outputs"), raw, "output", datatypes=tuple(V2_TYPES))
    except TensorError:
        raise malformed(_INFER) from None
    return {name: array for name, array in outputs}
