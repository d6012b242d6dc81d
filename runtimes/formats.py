"""The model formats a user's model folder may hold, one row each: the one place a format's
facts are written. A row says what executes the format (`executors`: the class that opens a
model file, or reaches a remote engine over a transport), the runtime names model.json may
choose for it and its default, the frameworks it needs, whether a batch costs one call, and the
model.json fields only it takes. models/folder_spec.py (what model.json may say),
models/folder_model.py (opening and describing the model) and the folder classifier and
detector read the table: a new format is one executor module and one row here.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Mapping

from contract import OPENVINO
from runtimes.frameworks import TENSORFLOW

FILE = "file"                    # the transport of a model file in the folder
TRANSPORT_SCHEMES = {"http": ("http", "https"), "grpc": ("grpc", "grpcs")}   # a remote engine's URL schemes


@dataclasses.dataclass(frozen=True)
class Format:
    name: str                             # model.json "format"
    runtime: str                          # what executes it, as /models says: litert, onnxruntime, ...
    executors: Mapping[str, str]          # transport (FILE, http, grpc) -> "module:Class"
    choices: tuple[str, ...] = ()         # other runtimes model.json's "runtime" may choose for a file
    default: str | None = None            # the runtime when model.json names none (None: `runtime`)
    frameworks: frozenset[str] = frozenset()   # imported, in the one order that works, before a load
    batches: bool = False                 # one call answers a batch (else image by image anyway)
    fields: frozenset[str] = frozenset()  # model.json fields only this format takes

    @property
    def remote(self) -> bool:
        return FILE not in self.executors

    @property
    def runtimes(self) -> tuple[str, ...]:
        """What model.json's "runtime" may say for a model file: its own runtime first."""
        return () if self.remote else (self.runtime, *self.choices)

    @property
    def schemes(self) -> tuple[str, ...]:
        """The URL schemes a remote engine of this format may be reached at."""
        return tuple(scheme for transport in self.executors for scheme in TRANSPORT_SCHEMES.get(transport, ()))

    def executor(self, transport: str = FILE):
        """The executor class for `transport` (imported when first needed)."""
        module, _, name = self.executors[transport].partition(":")
        return getattr(importlib.import_module(module), name)


# What runs a model file on OpenVINO instead of the format's own runtime (checked against it).
OPENVINO_EXECUTOR = "runtimes.openvino_file:OpenVINOFileExecutor"

FORMATS: dict[str, Format] = {row.name: row for row in (
    # OpenVINO answered the quantized TFLite models of ../shared otherwise than LiteRT (its
    # integer kernels round otherwise): LiteRT stays the default (docs/performance.md).
    Format("tflite", "litert", {FILE: "runtimes.tflite:TFLiteExecutor"}, choices=(OPENVINO,)),
    # OpenVINO ran ONNX files faster than ONNX Runtime with the same answers (docs/performance.md),
    # unless ONNX Runtime has a GPU (OnnxExecutor.sees_gpu).
    Format("onnx", "onnxruntime", {FILE: "runtimes.onnx:OnnxExecutor"}, choices=(OPENVINO,), default=OPENVINO),
    Format("keras", "tensorflow", {FILE: "runtimes.keras_file:KerasFileExecutor"},
           frameworks=frozenset({TENSORFLOW}), batches=True),
    # The Open Inference Protocol (KServe v2: Triton, KServe, OVMS, MLServer), over REST or gRPC.
    Format("kserve_v2", "kserve_v2", {"http": "runtimes.open_inference:KServeV2Executor",
                                      "grpc": "runtimes.open_inference_grpc:KServeV2GrpcExecutor"},
           batches=True, fields=frozenset({"encoding"})),
    # TensorFlow Serving's REST API (also KServe V1).
    Format("tfserving", "tfserving", {"http": "runtimes.tfserving:TFServingExecutor"},
           batches=True, fields=frozenset({"signature_name"})),
)}
REMOTE_FORMATS = tuple(name for name, row in FORMATS.items() if row.remote)


def default_runtime(fmt: Format) -> str:
    """What runs a model file when model.json does not say: the row's default, unless that is
    OpenVINO and the format's own runtime has a GPU to run it on."""
    if fmt.default == OPENVINO and fmt.executor().sees_gpu():
        return fmt.runtime
    return fmt.default or fmt.runtime
