"""The Open Inference Protocol (KServe V2) over gRPC: `"url": "grpc://host:port"` (or `grpcs://`
for TLS) in a kserve_v2 model folder. Triton (port 8001), KServe (8081), OpenVINO Model Server
and MLServer serve it next to their REST API.

The service uses three calls of `inference.GRPCInferenceService` (runtimes/open_inference.proto):
ModelReady, ModelMetadata (tensor names, data types and shapes, as in REST) and ModelInfer. The
input always travels as raw bytes (`raw_input_contents`, which every engine takes; no JSON);
outputs are read from `raw_output_contents` or, from an engine that answers with typed lists,
from `contents`. One HTTP/2 channel per model carries every call.

gRPC status codes map to the same answers as REST: UNAVAILABLE (or no connection before the
deadline) is an unreachable engine (503 model_not_ready with Retry-After), DEADLINE_EXCEEDED on
a connected channel is a slow engine (504), any other code an engine error (502). The engine's
own error message (`details()`) is never read into a log line or a response.
"""
from __future__ import annotations

import math
import threading
import urllib.parse

import grpc
import numpy as np

from runtimes import open_inference_pb2 as pb
from runtimes import remote
from runtimes.base import TensorInfo
from runtimes.open_inference import metadata_tensor
from runtimes.open_inference_tensors import V2_TYPES, v2_name
from runtimes.remote import EngineProblem, RemoteExecutor, RemoteTarget

_SERVICE = "/inference.GRPCInferenceService/"
# The largest answer the service takes from an engine (gRPC's own default is 4 MiB: too small
# for a detector's raw output, e.g. YOLOv5n's 8.6 MB at batch 1).
MAX_RECEIVE_BYTES = 512 * 1024 * 1024
# Codes that mean "this model is not (yet) there", when the readiness check gets them
# (UNAVAILABLE is an unreachable engine, whatever the call).
_NOT_THERE = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)
# Where a typed answer keeps each data type's values.
_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents"}
_INFER = "the inference request"
MAX_DIMENSIONS = 32   # numpy's limit is 64; no image model's output has more than a few


def address(url: str) -> str:
    """gRPC's target for a grpc(s):// URL: always a DNS name or address (a host called `unix`
    or `ipv4` must not become another kind of target); grpcs:// defaults to port 443."""
    parts = urllib.parse.urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return f"dns:///{host}:{443 if parts.port is None else parts.port}"


def check_host(target: RemoteTarget) -> None:
    """The address policy (runtimes.remote) over gRPC: the host's addresses are checked when the
    channel is made, at every load. gRPC resolves and connects in its C core, with no hook to vet
    the addresses it dials, so they are not pinned as over REST: a DNS answer that changes
    afterwards is not seen. What that leaves open is small: a metadata service speaks HTTP/1.1,
    and a gRPC call (HTTP/2 from its first bytes) gets nothing from it."""
    if target.allowed:
        return
    parts = urllib.parse.urlsplit(target.url)
    try:
        remote.checked_addresses(parts.hostname, parts.port or 443, target.allow_hosts)
    except remote.EngineAddressRefused:
        raise EngineProblem(remote.UNREACHABLE, remote.REFUSED_ADDRESS) from None
    except (OSError, UnicodeError):
        raise EngineProblem(remote.UNREACHABLE, "could not be resolved") from None


class GrpcEngine:
    """One gRPC channel to the engine (HTTP/2: every call of every thread multiplexed on it,
    kept open, reconnected by gRPC itself). No call is retried behind the caller's back."""

    def __init__(self, target: RemoteTarget):
        self.target = target
        check_host(target)
        options = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                   ("grpc.max_send_message_length", -1),
                   ("grpc.enable_retries", 0),
                   # After a lost connection gRPC waits before dialling again, doubling up to
                   # 2 minutes by default; an engine that is back is found within RETRY_SECONDS.
                   ("grpc.initial_reconnect_backoff_ms", 500),
                   ("grpc.max_reconnect_backoff_ms", remote.RETRY_SECONDS * 1000),
                   # ...and gives up one connection attempt after this long (gRPC's default is
                   # 20 s): a host that does not answer is unreachable as quickly as over REST.
                   ("grpc.min_reconnect_backoff_ms", int(remote.CONNECT_SECONDS * 1000)),
                   # While calls are in flight, a ping every 5 s that must be answered within 3 s:
                   # a connection whose engine went silent (a lost host, a partition: no FIN, no
                   # RST) is dropped and dialled again, instead of timing out every call for as
                   # long as TCP takes to notice. No pings while idle (the engines' default
                   # policy allows an idle client one ping per 5 minutes).
                   ("grpc.keepalive_time_ms", 5000),
                   ("grpc.keepalive_timeout_ms", 3000),
                   ("grpc.http2.ping_timeout_ms", 3000),
                   ("grpc.keepalive_permit_without_calls", 0)]
        where = address(target.url)
        if target.url.startswith("grpcs://"):
            self._channel = grpc.secure_channel(where, grpc.ssl_channel_credentials(), options)
        else:
            self._channel = grpc.insecure_channel(where, options)
        # gRPC metadata keys are lower case (models.folder_spec checked names and values for
        # gRPC); the values come from headers_env and are never logged.
        self._metadata = tuple((name.lower(), value) for name, value in target.headers.items())
        self._connected = threading.Event()
        self._channel.subscribe(self._watch, try_to_connect=False)
        self._methods = {
            "ModelReady": self._method("ModelReady", pb.ModelReadyResponse),
            "ModelMetadata": self._method("ModelMetadata", pb.ModelMetadataResponse),
            "ModelInfer": self._method("ModelInfer", pb.ModelInferResponse),
        }

    def close(self) -> None:
        """Stop watching, then close once gRPC's watcher thread has seen that (it looks every
        0.2 s; closing under it prints an exception from that thread)."""
        self._channel.unsubscribe(self._watch)
        closing = threading.Timer(1.0, self._channel.close)
        closing.daemon = True
        closing.start()

    def _method(self, name: str, answer):
        return self._channel.unary_unary(_SERVICE + name, request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=answer.FromString)

    def _watch(self, state: grpc.ChannelConnectivity) -> None:
        """Connected only while READY: a call that times out while the channel is (re)connecting
        met an unreachable engine (503), not a slow one (504)."""
        if state == grpc.ChannelConnectivity.READY:
            self._connected.set()
        else:
            self._connected.clear()

    def call(self, method: str, request, what: str, not_there: tuple = ()):
        """The engine's answer; EngineProblem for every gRPC status but OK. Codes in `not_there`
        say the model is not ready."""
        try:
            return self._methods[method](request, timeout=self.target.timeout_s, metadata=self._metadata)
        except grpc.RpcError as error:
            code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
        if code == grpc.StatusCode.UNAVAILABLE or (code == grpc.StatusCode.DEADLINE_EXCEEDED
                                                   and not self._connected.is_set()):
            raise EngineProblem(remote.UNREACHABLE, f"could not be reached for {what} (gRPC {code.name})")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise EngineProblem(remote.TIMEOUT, f"did not answer {what} within {self.target.timeout_s:g} s")
        if code in not_there:
            raise EngineProblem(remote.NOT_READY, f"says the model is not ready (gRPC {code.name})")
        hint = " (a message over the engine's size limit)" if code == grpc.StatusCode.RESOURCE_EXHAUSTED else ""
        raise EngineProblem(remote.FAILED, f"answered gRPC status {code.name} to {what}{hint}")


class KServeV2GrpcExecutor(RemoteExecutor):

    def _connect(self, target: RemoteTarget) -> GrpcEngine:
        return GrpcEngine(target)

    def probe(self) -> None:
        request = pb.ModelReadyRequest(name=self.target.model, version=self.target.version or "")
        answer = self.engine.call("ModelReady", request, "the model readiness check", not_there=_NOT_THERE)
        if not answer.ready:
            raise EngineProblem(remote.NOT_READY, "says the model is not ready")

    def _describe(self, size, layout) -> tuple[TensorInfo, list[TensorInfo]]:
        what = "the model metadata request"
        request = pb.ModelMetadataRequest(name=self.target.model, version=self.target.version or "")
        meta = self.engine.call("ModelMetadata", request, what)
        if not meta.outputs:
            raise EngineProblem(remote.FAILED, f"answered {what} with a malformed body")
        if len(meta.inputs) != 1:
            raise ValueError(f"the model has {len(meta.inputs)} inputs; one image input is supported")
        tensors = [metadata_tensor({"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}, what)
                   for t in (*meta.inputs, *meta.outputs)]
        return tensors[0], tensors[1:]

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        tensor = pb.ModelInferRequest.InferInputTensor(name=self.input.name, datatype=v2_name(batch.dtype),
                                                       shape=list(batch.shape))
        raw = np.ascontiguousarray(batch, batch.dtype.newbyteorder("<")).tobytes()
        request = pb.ModelInferRequest(model_name=self.target.model, model_version=self.target.version or "",
                                       inputs=[tensor], raw_input_contents=[raw])
        answers = _read_outputs(self.engine.call("ModelInfer", request, _INFER))
        missing = [o.name for o in self.outputs if o.name not in answers]
        if missing:
            raise EngineProblem(remote.FAILED, f"answered {_INFER} without output '{missing[0]}'")
        return [answers[o.name] for o in self.outputs]


def _read_outputs(answer: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """The answer's output tensors by name, from raw bytes or typed lists, each checked against
    its stated shape and data type."""
    try:
        return _outputs(answer)
    except (ValueError, TypeError, OverflowError, MemoryError):   # e.g. a shape numpy cannot make
        raise remote.malformed(_INFER) from None


def _outputs(answer: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    raw = list(answer.raw_output_contents)
    if raw and len(raw) != len(answer.outputs):
        raise EngineProblem(remote.FAILED, f"answered {_INFER} with {len(raw)} raw outputs for "
                                           f"{len(answer.outputs)} tensors")
    arrays = {}
    for i, item in enumerate(answer.outputs):
        if item.datatype not in V2_TYPES or any(d < 0 for d in item.shape) or len(item.shape) > MAX_DIMENSIONS:
            raise remote.malformed(_INFER)
        dtype, shape = np.dtype(V2_TYPES[item.datatype]), tuple(int(d) for d in item.shape)
        count = math.prod(shape)   # Python integers: no overflow to a small number
        if raw:
            if len(raw[i]) != count * dtype.itemsize:
                raise EngineProblem(remote.FAILED, f"answered output {i} with {len(raw[i])} bytes for shape {list(shape)}")
            array = np.frombuffer(raw[i], dtype.newbyteorder("<")).astype(dtype)
        else:
            field = _CONTENTS.get(item.datatype)
            values = getattr(item.contents, field) if field else ()
            if len(values) != count:
                raise EngineProblem(remote.FAILED, f"answered output {i} with {len(values)} values for shape {list(shape)}")
            wide = np.asarray(values)
            if dtype.kind in "iu" and wide.size:
                limits = np.iinfo(dtype)   # UINT8 arrives as uint32: 300 must not become 44
                if wide.min() < limits.min or wide.max() > limits.max:
                    raise EngineProblem(remote.FAILED, f"answered output {i} with values outside {item.datatype}")
            array = wide.astype(dtype)
        arrays[item.name] = array.reshape(shape)
    return arrays
