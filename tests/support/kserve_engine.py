"""A real inference engine for the tests: KServe's Python model server hosting one of the small
models from ../shared through its own runtime (LiteRT for .tflite, ONNX Runtime for .onnx).

Runs in its own virtualenv (.venv-engine, requirements-engine.txt): kserve pins versions that
clash with the service's. It imports nothing from the project. KServe answers both protocols:
V1 (`POST /v1/models/<m>:predict`, `{"instances"}` → `{"predictions"}`) and the Open Inference
Protocol V2 (`/v2/models/<m>` metadata, `/infer`, binary tensors after the JSON header), the
same protocol over gRPC (`--grpc_port`: ModelReady, ModelMetadata, ModelInfer with raw tensors), and
counts its own predict calls in `/metrics` (`request_predict_seconds_count`).

Each `--model NAME=FILE` is served under NAME; `--variants` adds, for every model, versions
that lie: NAME_wrong_shape (one class short), NAME_nan (NaN scores), NAME_error (the engine
answers HTTP 500 with a message of its own) and NAME_slow (3 s per call), for the service's
502 and 504 paths.

    .venv-engine/bin/python -P tests/support/kserve_engine.py --model mobilenet=m.tflite --http_port 8080 \
        --grpc_port 8081
"""
from __future__ import annotations

import argparse
import asyncio
import threading

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.utils.utils import from_np_dtype

# The V2 data types of the model's tensors (kserve.protocol.infer_type names them the same way).
_V2 = {np.dtype(np.uint8): "UINT8", np.dtype(np.int8): "INT8", np.dtype(np.float32): "FP32",
       np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64"}


class _TFLite:
    """LiteRT, one image per invoke (the models fix batch 1); quantized outputs dequantized."""

    def __init__(self, path: str):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=path, num_threads=2)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._outputs = self._interpreter.get_output_details()
        self.input = (self._input["name"], np.dtype(self._input["dtype"]), list(self._input["shape"][1:]))
        self.outputs = [(d["name"], list(d["shape"][1:])) for d in self._outputs]
        self._lock = threading.Lock()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        rows = []
        with self._lock:
            for image in x:
                self._interpreter.set_tensor(self._input["index"], image[None])
                self._interpreter.invoke()
                rows.append([self._dequantize(self._interpreter.get_tensor(d["index"]), d) for d in self._outputs])
        return [np.concatenate(parts) for parts in zip(*rows)]

    @staticmethod
    def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
        scale, zero_point = detail["quantization"]
        if scale:
            return ((y.astype(np.float32) - zero_point) * np.float32(scale)).astype(np.float32)
        return y.astype(np.float32)


class _Onnx:
    def __init__(self, path: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self._session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        arg = self._session.get_inputs()[0]
        self.input = (arg.name, np.dtype(np.float32), list(arg.shape[1:]))
        self.outputs = [(o.name, list(o.shape[1:])) for o in self._session.get_outputs()]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        rows = [self._session.run(None, {self.input[0]: image[None]}) for image in x]
        return [np.concatenate(parts).astype(np.float32) for parts in zip(*rows)]


class ImageModel(Model):
    def __init__(self, name: str, path: str, lie: str | None = None, delay: float = 0.0):
        super().__init__(name)
        self._path, self._lie, self._delay = path, lie, delay
        self._runtime = None

    def load(self) -> bool:
        self._runtime = _TFLite(self._path) if self._path.endswith(".tflite") else _Onnx(self._path)
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        name, dtype, shape = self._runtime.input
        return [{"name": name, "datatype": _V2[dtype], "shape": [-1, *shape]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": name, "datatype": "FP32", "shape": [-1, *shape]} for name, shape in self._runtime.outputs]

    async def predict(self, payload, headers=None):
        if self._delay:
            await asyncio.sleep(self._delay)  # slow, without holding up the other models
        v2 = isinstance(payload, InferRequest)
        x = payload.inputs[0].as_numpy() if v2 else np.asarray(payload["instances"])
        outputs = self._falsify(self._runtime.run(x.astype(self._runtime.input[1], copy=False)))
        if not v2:
            return {"predictions": outputs[0].tolist()}
        infer_outputs = []
        for (name, _), y in zip(self._runtime.outputs, outputs):
            out = InferOutput(name=name, shape=list(y.shape), datatype=from_np_dtype(y.dtype))
            out.set_data_from_numpy(y, binary_data=payload.use_binary_outputs)
            infer_outputs.append(out)
        return InferResponse(model_name=self.name, infer_outputs=infer_outputs, response_id=payload.id or "0",
                             use_binary_outputs=payload.use_binary_outputs)

    def _falsify(self, outputs: list[np.ndarray]) -> list[np.ndarray]:
        if self._lie == "shape":
            return [outputs[0][..., :-1], *outputs[1:]]
        if self._lie == "nan":
            outputs[0][..., 0] = np.nan
        if self._lie == "error":
            raise RuntimeError("ENGINE-INTERNAL-DETAIL /models/secret/path")
        return outputs


VARIANTS = {"wrong_shape": {"lie": "shape"}, "nan": {"lie": "nan"}, "error": {"lie": "error"},
            "slow": {"delay": 3.0}}


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=FILE")
    parser.add_argument("--variants", action="store_true")
    args, _ = parser.parse_known_args()
    models = []
    for entry in args.model:
        name, path = entry.split("=", 1)
        models.append(ImageModel(name, path))
        if args.variants:
            models += [ImageModel(f"{name}_{suffix}", path, **kwargs) for suffix, kwargs in VARIANTS.items()]
    for model in models:
        model.load()
    # gRPC on --grpc_port too, with room for YOLOv5n's 8.6 MB output (KServe's default limit is
    # 8 MiB). Its gRPC server reads the limits from the module's parsed command line.
    model_server.args.grpc_max_send_message_length = model_server.args.grpc_max_receive_message_length = 64 << 20
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=True, workers=1,
                enable_latency_logging=False).start(models)


if __name__ == "__main__":
    main()
