"""TensorFlow Serving's REST API, also spoken by KServe (its V1 protocol) and OpenVINO Model
Server.

The shapes, as tensorflow/serving's tensorflow_serving/g3doc/api_rest.md and
model_servers/http_rest_api_handler.cc, http_rest_api_util.cc define them, and kserve's
python/kserve/kserve/protocol/rest/v1_endpoints.py:
- status: `GET /v1/models/<m>[/versions/<v>]`. TF Serving answers
  `{"model_version_status": [{"version", "state": "AVAILABLE", ...}]}`; KServe V1 answers
  `{"name", "ready": true}` (503 while not ready).
- metadata: `GET /v1/models/<m>[/versions/<v>]/metadata` answers
  `{"model_spec", "metadata": {"signature_def": {"signature_def": {"serving_default": {"inputs":
  {alias: {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}, ...]}}}, "outputs": ...}}}}}`
  (OpenVINO Model Server spells the same names in camelCase). KServe V1 has none (404): then
  model.json's input.size and input.layout describe the input, and one call on a blank image
  the outputs.
- predict: `POST /v1/models/<m>[/versions/<v>]:predict` with `{"instances": [...]}` (row
  format, one input) and an optional `signature_name`; the answer is `{"predictions": [...]}`,
  one value per instance, or one object per instance keyed by output alias when there are several.
"""
from __future__ import annotations

import numpy as np
import orjson

from runtimes.base import TensorInfo
from runtimes.remote import FAILED, NOT_READY, EngineProblem, RemoteExecutor, expect_ok, malformed, parse_json, url_path

TF_TYPES = {
    "DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_HALF": np.float16, "DT_BOOL": np.bool_,
    "DT_UINT8": np.uint8, "DT_INT8": np.int8, "DT_UINT16": np.uint16, "DT_INT16": np.int16,
    "DT_INT32": np.int32, "DT_INT64": np.int64,
}
DEFAULT_SIGNATURE = "serving_default"
_PREDICT = "the predict request"
_METADATA = "the model metadata request"


def _field(obj, snake: str, camel: str):
    """TF Serving writes proto field names as they are; OpenVINO Model Server in camelCase."""
    if not isinstance(obj, dict):
        raise malformed(_METADATA)
    return obj[snake] if snake in obj else obj.get(camel)


class TFServingExecutor(RemoteExecutor):

    @property
    def _model_path(self) -> str:
        path = url_path("v1", "models", self.target.model)
        return path + url_path("versions", self.target.version) if self.target.version else path

    def probe(self) -> None:
        what = "the model status request"
        response = self.engine.call("GET", self._model_path, what)
        if response.status_code == 404:
            raise EngineProblem(NOT_READY, "does not serve the model (HTTP 404)")
        expect_ok(response, what)
        status = parse_json(response.content, what)
        if "ready" in status:  # KServe V1
            ready = status["ready"] is True
        else:
            versions = status.get("model_version_status", status.get("modelVersionStatus"))
            if not isinstance(versions, list):
                raise malformed(what)
            ready = any(isinstance(v, dict) and v.get("state") == "AVAILABLE" for v in versions)
        if not ready:
            raise EngineProblem(NOT_READY, "says no version of the model is available")

    def _describe(self, size, layout) -> tuple[TensorInfo, list[TensorInfo]]:
        response = self.engine.call("GET", self._model_path + "/metadata", _METADATA)
        if response.status_code == 404:  # KServe V1 publishes no metadata
            return self._without_metadata(size, layout)
        expect_ok(response, _METADATA)
        signature = self._signature(parse_json(response.content, _METADATA))
        inputs, outputs = signature.get("inputs"), signature.get("outputs")
        if not isinstance(inputs, dict) or not isinstance(outputs, dict) or not outputs:
            raise malformed(_METADATA)
        if len(inputs) != 1:
            raise ValueError(f"the signature has {len(inputs)} inputs; one image input is supported")
        (alias, info), = inputs.items()
        return _tensor(alias, info), [_tensor(a, i) for a, i in outputs.items()]

    def _signature(self, meta: dict) -> dict:
        wanted = self.target.signature_name or DEFAULT_SIGNATURE
        signatures = _field(_field(meta.get("metadata"), "signature_def", "signatureDef"),
                            "signature_def", "signatureDef")
        if not isinstance(signatures, dict):
            raise malformed(_METADATA)
        if not isinstance(signatures.get(wanted), dict):
            raise ValueError(f"the model has no signature '{wanted}'")
        return signatures[wanted]

    def _without_metadata(self, size, layout) -> tuple[TensorInfo, list[TensorInfo]]:
        if not size or not layout:
            raise ValueError("the engine publishes no metadata for the model, so 'input.size' and "
                             "'input.layout' (NHWC or NCHW) are required")
        h, w = size
        shape = (None, h, w, 3) if layout == "NHWC" else (None, 3, h, w)
        self.input = TensorInfo("instances", shape, np.dtype(np.float32))
        predictions = self._predict(np.zeros((1, *shape[1:]), np.float32))
        if _rows_are_objects(predictions):
            names = [str(name) for name in predictions[0]]
        else:
            names = ["predictions"]
        self.outputs = [TensorInfo(name, (None,), np.dtype(np.float32)) for name in names]
        answers = self._arrays(predictions)
        return self.input, [TensorInfo(o.name, (None, *y.shape[1:]), o.dtype) for o, y in zip(self.outputs, answers)]

    def _predict(self, batch: np.ndarray):
        body = {"instances": np.ascontiguousarray(batch)}
        if self.target.signature_name:
            body["signature_name"] = self.target.signature_name
        response = self.engine.call("POST", self._model_path + ":predict", _PREDICT,
                                    body=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                                    headers={"Content-Type": "application/json"})
        expect_ok(response, _PREDICT)
        answer = parse_json(response.content, _PREDICT)
        if "predictions" not in answer:
            raise EngineProblem(FAILED, f"answered {_PREDICT} without 'predictions'")
        return answer["predictions"]

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._arrays(self._predict(batch))

    def _arrays(self, predictions) -> list[np.ndarray]:
        """The outputs in `self.outputs` order from one value (or one object) per instance."""
        try:
            if _rows_are_objects(predictions):
                return [np.asarray([row[o.name] for row in predictions], dtype=o.dtype) for o in self.outputs]
            if len(self.outputs) != 1:
                raise KeyError("one value per instance, several outputs expected")
            return [np.asarray(predictions, dtype=self.outputs[0].dtype)]
        except (KeyError, TypeError, ValueError):
            raise EngineProblem(FAILED, f"answered {_PREDICT} with outputs that are missing or ragged") from None


def _rows_are_objects(predictions) -> bool:
    return isinstance(predictions, list) and bool(predictions) and all(isinstance(r, dict) for r in predictions)


def _tensor(alias: str, info) -> TensorInfo:
    """A signature's tensor: its alias (the name predictions use), dtype and shape."""
    dtype = _field(info, "dtype", "dtype")
    shape = _field(info, "tensor_shape", "tensorShape")
    if dtype not in TF_TYPES:
        raise ValueError(f"tensor '{alias[:64]}' has dtype {str(dtype)[:16]!r}; supported: {', '.join(TF_TYPES)}")
    if _field(shape, "unknown_rank", "unknownRank"):
        raise ValueError(f"tensor '{alias[:64]}' has no known rank")
    try:
        dims = [int(d.get("size", -1)) for d in shape.get("dim", [])]
    except (AttributeError, TypeError, ValueError):
        raise malformed(_METADATA) from None
    return TensorInfo(alias, tuple(d if d >= 0 else None for d in dims), np.dtype(TF_TYPES[dtype]))
