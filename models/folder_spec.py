"""`MODELS_DIR/<name>/model.json`: a user's own model folder, validated field by field.

Every problem names the folder and the field, so a bad folder is fixed in one pass. A folder
holds a model file (keras, tflite, onnx) or names a model on a remote inference engine
(kserve_v2, tfserving: `url`, `model`, ...); labels and preprocessing are the same for both.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import urllib.parse
from pathlib import Path

import numpy as np

from contract import LETTERBOX, STRETCH, ModelUnavailable
from runtimes.formats import FORMATS, REMOTE_FORMATS, TRANSPORT_SCHEMES, default_runtime
from runtimes.remote import (
    DEFAULT_PORTS,
    GRPC_SCHEMES,
    RemoteTarget,
    host_allowed,
    literal_address,
    refused_engine_address,
)

log = logging.getLogger(__name__)

SPEC_FILE = "model.json"
# A model folder is MODELS_DIR/<name>/model.json; names stay URL- and path-safe (built-in names too).
FOLDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
TASKS = ("classification", "detection")
RESIZES = (STRETCH, LETTERBOX)
OUTPUTS = ("softmax", "logits")
LAYOUTS = ("yolov8", "yolov5")
BOX_UNITS = ("normalized", "pixels")
TENSOR_LAYOUTS = ("NHWC", "NCHW")
ENCODINGS = ("auto", "json", "binary")
# Every remote format's fields; the formats' own fields (encoding, signature_name) come from the table.
_FORMAT_FIELDS = frozenset().union(*(row.fields for row in FORMATS.values()))
_REMOTE_KEYS = {"url", "model", "version", "timeout_s", "headers_env"} | _FORMAT_FIELDS
_KEYS = {"task", "format", "file", "labels", "input", "output", "layout", "box_units", "iou_threshold",
         "runtime"} | _REMOTE_KEYS
_INPUT_KEYS = {"size", "resize", "mean", "std", "layout"}
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_GRPC_KEY = re.compile(r"[0-9a-z_.-]{1,64}")
_GRPC_RESERVED = frozenset({"te", "content-type", "user-agent", "host", "connection"})
# The model input is float32: (pixel - mean) / std must be a finite float32 for every pixel 0-255.
_FLOAT32_MAX, _FLOAT32_TINY = float(np.finfo(np.float32).max), float(np.finfo(np.float32).tiny)
_LISTED_LINES = 10   # line numbers a problem lists before "and N more"


class SpecError(ModelUnavailable):
    """A model folder that is not what its model.json says: every problem, each naming the
    folder and the field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclasses.dataclass(frozen=True)
class FolderSpec:
    name: str
    folder: Path
    task: str
    format: str
    file: str
    labels_file: str
    labels: tuple[str, ...]
    size: tuple[int, int] | None
    resize: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output: str = "softmax"
    layout: str | None = None
    box_units: str | None = None
    iou_threshold: float = 0.45
    remote: RemoteTarget | None = None     # the engine, for kserve_v2 and tfserving folders
    tensor_layout: str | None = None       # input.layout: NHWC or NCHW, for engines without metadata
    runtime: str | None = None             # what executes a model file (its format's runtimes); None for engines

    @property
    def path(self) -> Path:
        return self.folder / self.file

    @property
    def where(self) -> str:
        """How problems name the folder's spec: relative to MODELS_DIR, never an absolute path."""
        return spec_location(self.name)

    def describe(self) -> dict:
        info = {"task": self.task, "format": self.format}
        if self.remote:
            info["remote"] = _describe_remote(self.remote)
        else:
            info["file"] = self.file
        info.update(labels=self.labels_file,
                    input={"size": list(self.size) if self.size else None, "resize": self.resize,
                           "mean": list(self.mean), "std": list(self.std)})
        if self.tensor_layout:
            info["input"]["layout"] = self.tensor_layout
        if self.task == "classification":
            info["output"] = self.output
        else:
            info.update(layout=self.layout, box_units=self.box_units, iou_threshold=self.iou_threshold)
        return info


def _describe_remote(remote: RemoteTarget) -> dict:
    """The engine as /models shows it: the URL's host only, header names but never values."""
    info = {"host": remote.host, "model": remote.model, "version": remote.version,
            "timeout_s": remote.timeout_s, "headers": [header for header, _ in remote.headers_env]}
    if remote.signature_name:
        info["signature_name"] = remote.signature_name
    info["encoding"] = remote.encoding
    info["transport"] = remote.transport
    return info


def spec_location(name: str) -> str:
    return f"MODELS_DIR/{name}/{SPEC_FILE}"


def load_spec(folder: Path, allow_hosts: frozenset[str] = frozenset()) -> FolderSpec:
    """The folder's model.json, checked field by field; SpecError lists every problem.
    `allow_hosts` (FETCH_ALLOW_HOSTS): engine hosts let through the address policy."""
    folder = Path(folder)
    reader = _SpecReader(folder, _read_json(folder), allow_hosts)
    raw = reader.raw
    for key in sorted(set(raw) - _KEYS):
        reader.problem(key, f"is not a known field; known fields: {', '.join(sorted(_KEYS))}")
    task = reader.choice("task", TASKS, required=True)
    fmt = reader.choice("format", tuple(FORMATS), required=True)
    remote, file, runtime = None, "", None
    if fmt in REMOTE_FORMATS:
        remote = RemoteSpecReader(reader).target(fmt)
        if "runtime" in raw:
            files = " or ".join(name for name, row in FORMATS.items() if not row.remote)
            reader.problem("runtime", f"is for model files (format {files})")
    else:
        file = reader.relative_file("file")
        if fmt is not None:
            runtime = reader.choice("runtime", FORMATS[fmt].runtimes, default=default_runtime(FORMATS[fmt]))
        for key in sorted(_REMOTE_KEYS & set(raw)):
            reader.problem(key, f"is for models on a remote engine (format {' or '.join(REMOTE_FORMATS)})")
    labels_file = reader.relative_file("labels", resolved_inside=True)
    labels = reader.labels(labels_file, task) if labels_file else ()
    size, resize, mean, std = reader.input_section(task)
    tensor_layout = reader.tensor_layout(remote is not None)
    output = reader.choice("output", OUTPUTS, default="softmax")
    layout = reader.choice("layout", LAYOUTS, required=task == "detection")
    box_units = reader.choice("box_units", BOX_UNITS, required=task == "detection")
    iou = raw.get("iou_threshold", 0.45)
    if not isinstance(iou, (int, float)) or isinstance(iou, bool) or not 0 < iou <= 1:
        reader.problem("iou_threshold", "must be a number above 0 and at most 1")
        iou = 0.45
    if reader.problems:
        raise SpecError(reader.problems)
    return FolderSpec(name=folder.name, folder=folder, task=task, format=fmt, file=file,
                      labels_file=labels_file, labels=labels, size=size, resize=resize,
                      mean=mean, std=std, output=output or "softmax", layout=layout,
                      box_units=box_units, iou_threshold=float(iou), remote=remote,
                      tensor_layout=tensor_layout, runtime=runtime)


def _read_json(folder: Path) -> dict:
    where = spec_location(folder.name)
    try:
        raw = json.loads((folder / SPEC_FILE).read_text("utf-8"))
    except FileNotFoundError:
        raise SpecError([f"{where} does not exist"]) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError([f"{where} is not valid JSON ({type(exc).__name__} at line "
                         f"{getattr(exc, 'lineno', '?')})"]) from None
    if not isinstance(raw, dict):
        raise SpecError([f"{where} must hold a JSON object"])
    return raw


class _SpecReader:
    """Reads model.json's fields, collecting every problem instead of stopping at the first."""

    def __init__(self, folder: Path, raw: dict, allow_hosts: frozenset[str] = frozenset()):
        self.folder, self.raw, self.allow_hosts = folder, raw, allow_hosts
        self.where = spec_location(folder.name)
        self.problems: list[str] = []

    def problem(self, field: str, text: str) -> None:
        self.problems.append(f"{self.where}: '{field}' {text}")

    def choice(self, key, choices, default=None, required=False):
        value = self.raw.get(key, default)
        if value is None:
            if required:
                self.problem(key, f"is required; one of {', '.join(choices)}")
            return None
        if value not in choices:
            self.problem(key, f"is {value!r}; use one of {', '.join(choices)}")
            return None
        return value

    def relative_file(self, key, resolved_inside: bool = False) -> str | None:
        """A file named relative to the folder. The name must stay inside (no '..' out); with
        `resolved_inside`, so must the file itself once symbolic links are followed. The model
        file may be a link out (weights often live on a shared volume, and the file is never
        served); the labels may not: /models/<name>/labels serves them to any client."""
        value = self.raw.get(key)
        if not isinstance(value, str) or not value:
            self.problem(key, "is required: a file name relative to the folder")
            return None
        target = Path(os.path.normpath(self.folder / value))
        if Path(os.path.normpath(self.folder)) not in target.parents:
            self.problem(key, "must name a file inside the model's folder")
            return None
        if resolved_inside and Path(os.path.realpath(self.folder)) not in Path(os.path.realpath(target)).parents:
            self.problem(key, f"names {value!r}, a symbolic link that leads out of the model's folder: "
                              "copy the file into the folder")
            return None
        if not target.is_file():
            self.problem(key, f"names {value!r}, which is not in the folder")
            return None
        return value

    def labels(self, labels_file: str, task: str | None) -> tuple[str, ...]:
        """One label per line (blank lines at the end are ignored). An empty line is refused; so
        is a repeated label in a detector, where the label is all a client sees of a class (the
        `classes` filter, DeepStack's answers). A classifier's answers also carry the class index
        on /v2, and ImageNet's own label file names two classes "crane": there a repeat is logged."""
        try:
            lines = [line.strip() for line in (self.folder / labels_file).read_text("utf-8").splitlines()]
        except UnicodeDecodeError:
            self.problem("labels", "must be a UTF-8 text file, one label per line")
            return ()
        while lines and not lines[-1]:
            lines.pop()
        if not lines:
            self.problem("labels", "names an empty file")
        empty = [number for number, line in enumerate(lines, 1) if not line]
        if empty:
            self.problem("labels", f"has empty lines: {_numbers(empty)} (one label per line, none empty)")
        repeats = _repeats(lines)
        if repeats and task == "detection":
            self.problem("labels", f"repeats labels: {_numbers(repeats)} (each class needs a label of its own)")
        elif repeats:
            log.warning("%s: 'labels' repeats labels: %s; those classes are answered under the same name",
                        self.where, _numbers(repeats))
        return tuple(lines)

    def input_section(self, task: str | None):
        """(size, resize, mean, std) from the `input` object."""
        inp = self.raw.get("input", {})
        if not isinstance(inp, dict):
            self.problem("input", "must be an object")
            inp = {}
        for key in sorted(set(inp) - _INPUT_KEYS):
            self.problem(f"input.{key}", f"is not a known field; known fields: {', '.join(sorted(_INPUT_KEYS))}")
        size = inp.get("size")
        if size is not None:
            if (not isinstance(size, list) or len(size) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in size)):
                self.problem("input.size", "must be [height, width], whole numbers from 1 to 4096")
                size = None
            else:
                size = (size[0], size[1])
        resize = inp.get("resize", LETTERBOX if task == "detection" else STRETCH)
        if resize not in RESIZES:
            self.problem("input.resize", f"is {resize!r}; use one of {', '.join(RESIZES)}")
        mean, std = self._triple(inp, "mean", [0.0, 0.0, 0.0]), self._triple(inp, "std", [1.0, 1.0, 1.0])
        self.normalisation(mean, std)
        return size, resize, mean, std

    def tensor_layout(self, remote: bool) -> str | None:
        inp = self.raw.get("input")
        value = inp.get("layout") if isinstance(inp, dict) else None
        if value is None:
            return None
        if not remote:
            self.problem("input.layout", "is for models on a remote engine; a model file states its own layout")
            return None
        if value not in TENSOR_LAYOUTS:
            self.problem("input.layout", f"is {value!r}; use one of {', '.join(TENSOR_LAYOUTS)}")
            return None
        return value

    def _triple(self, inp: dict, key: str, default):
        value = inp.get(key, default)
        if (not isinstance(value, list) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            self.problem(f"input.{key}", "must be a list of three numbers (R, G, B)")
            return tuple(default)
        values = tuple(float(v) for v in value)
        if not all(math.isfinite(v) and abs(v) <= _FLOAT32_MAX for v in values):
            self.problem(f"input.{key}", "must be finite numbers (no NaN or Infinity) within float32's range")
            return tuple(default)
        if key == "std" and not all(v > 0 for v in values):
            self.problem("input.std", "must be positive numbers")
        return values

    def normalisation(self, mean: tuple, std: tuple) -> None:
        """(pixel - mean) / std must be a finite float32 for every pixel value 0-255: no std so
        small (a subnormal, or one that float32 rounds to 0) that a pixel becomes infinite."""
        if all(s > 0 for s in std) and any(s < _FLOAT32_TINY or (255 + abs(m)) / s > _FLOAT32_MAX
                                           for m, s in zip(mean, std)):
            self.problem("input.std", "is too small: (pixel - mean) / std would not be a finite float32 number")


class RemoteSpecReader:
    """The fields of a folder that names a model on a remote engine. Nothing here echoes the URL
    or a header's value: either may hold a secret."""

    def __init__(self, reader: _SpecReader):
        self.reader, self.raw = reader, reader.raw

    def target(self, fmt: str) -> RemoteTarget | None:
        problems_before = len(self.reader.problems)
        if "file" in self.raw:
            self.reader.problem("file", "is for model files; a model on a remote engine has 'url' and 'model'")
        url, model, version = self._url(fmt), self._model(), self._version()
        timeout = self.raw.get("timeout_s", 10)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 3600:
            self.reader.problem("timeout_s", "must be a number of seconds above 0 and at most 3600")
        pairs, values = self._headers()
        row = FORMATS[fmt]
        for field in sorted(_FORMAT_FIELDS & set(self.raw) - row.fields):
            owners = " or ".join(name for name, other in FORMATS.items() if field in other.fields)
            self.reader.problem(field, f"is for {owners}, not {fmt}")
        encoding = self.reader.choice("encoding", ENCODINGS, default="auto") if "encoding" in row.fields else "json"
        grpc = urllib.parse.urlsplit(url).scheme in GRPC_SCHEMES
        if grpc and "encoding" in row.fields and encoding == "json":
            self.reader.problem("encoding", "is 'json', but gRPC carries tensors as raw bytes: use an http(s):// URL "
                                            "for JSON tensors")
        if grpc:
            self._grpc_metadata(pairs, values)
        signature = self.raw.get("signature_name") if "signature_name" in row.fields else None
        if signature is not None and (not isinstance(signature, str) or not signature):
            self.reader.problem("signature_name", "must be the name of one of the model's signatures")
        if len(self.reader.problems) > problems_before:
            return None
        return RemoteTarget(url=url, model=model, version=version, timeout_s=float(timeout), headers_env=pairs,
                            encoding="binary" if grpc else encoding,
                            signature_name=signature,
                            headers=values, allow_hosts=self.reader.allow_hosts)

    def _url(self, fmt: str) -> str:
        value = self.raw.get("url")
        if not isinstance(value, str) or not value:
            self.reader.problem("url", "is required: the engine's base URL, e.g. http://triton:8000")
            return ""
        parts = urllib.parse.urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            self.reader.problem("url", "has an invalid port")
            return ""
        schemes = FORMATS[fmt].schemes
        if parts.scheme not in schemes or not parts.hostname:
            takers = [name for name, row in FORMATS.items() if parts.scheme in row.schemes]
            kin = next((schemes for schemes in TRANSPORT_SCHEMES.values() if parts.scheme in schemes), ())
            grpc = (f" ({' and '.join(f'{scheme}://' for scheme in kin)} are for {' or '.join(takers)})"
                    if takers else "")
            listed = ", ".join(f"{scheme}://" for scheme in schemes[:-1]) + f" or {schemes[-1]}://"
            self.reader.problem("url", f"must be an {listed} URL with a host{grpc}")
        elif parts.username is not None or parts.password is not None:
            self.reader.problem("url", "must not hold credentials; name an environment variable in 'headers_env'")
        elif parts.query or parts.fragment:
            self.reader.problem("url", "must be a base URL, without a query or fragment")
        elif parts.scheme in GRPC_SCHEMES and parts.path not in ("", "/"):
            self.reader.problem("url", "must be grpc://host:port or grpcs://host[:port], without a path")
        elif parts.scheme == "grpc" and port is None:
            self.reader.problem("url", "needs the engine's gRPC port, e.g. grpc://triton:8001 (KServe: 8081)")
        elif self._refused(parts.hostname, port or DEFAULT_PORTS[parts.scheme]):
            self.reader.problem("url", "names a link-local or cloud metadata address, where no inference engine "
                                       "lives; name the host in FETCH_ALLOW_HOSTS to allow it")
        return value.rstrip("/")

    def _refused(self, host: str, port: int) -> bool:
        """A host spelled as an IP address is checked now; a name, when the engine is connected
        to (runtimes.remote: every address it resolves to)."""
        address = literal_address(host)
        return (address is not None and refused_engine_address(address)
                and not host_allowed(host, port, self.reader.allow_hosts))

    def _grpc_metadata(self, pairs: tuple[tuple[str, str], ...], values: dict) -> None:
        """Over gRPC the headers travel as metadata: lower-case names without gRPC's own
        (grpc-*, binary *-bin, and the ones HTTP/2 or gRPC set), printable ASCII values."""
        for header, variable in pairs:
            key = header.lower()
            if (not _GRPC_KEY.fullmatch(key) or key.startswith("grpc-") or key.endswith("-bin")
                    or key in _GRPC_RESERVED):
                self.reader.problem(f"headers_env.{header}", "cannot travel as gRPC metadata (letters, digits, '-', "
                                                             "'_' and '.'; not grpc-*, *-bin or "
                                                             f"{', '.join(sorted(_GRPC_RESERVED))})")
            elif not all(" " <= c <= "~" for c in values[header]):
                self.reader.problem(f"headers_env.{header}", f"names {variable}, whose value is not printable ASCII, "
                                                             "which gRPC metadata needs")

    def _model(self) -> str:
        value = self.raw.get("model")
        if (not isinstance(value, str) or not value or len(value) > 256 or not value.isprintable()
                or "/" in value):
            self.reader.problem("model", "is required: the model's name on the engine (no '/')")
            return ""
        return value

    def _version(self) -> str | None:
        value = self.raw.get("version")
        if value is None:
            return None
        text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
        if not text.isdigit() or int(text) < 1 or len(text) > 19:
            self.reader.problem("version", "must be a positive whole number")
            return None
        return str(int(text))

    def _headers(self) -> tuple[tuple[tuple[str, str], ...], dict]:
        """(header, variable) pairs and the header values read from the environment."""
        value = self.raw.get("headers_env", {})
        if not isinstance(value, dict):
            self.reader.problem("headers_env", 'must be an object {"Header-Name": "ENVIRONMENT_VARIABLE"}')
            return (), {}
        pairs, values = [], {}
        for header, variable in value.items():
            if not _HEADER_NAME.fullmatch(header):
                self.reader.problem("headers_env", "holds a name that is not an HTTP header name")
            elif not isinstance(variable, str) or not _ENV_NAME.fullmatch(variable):
                self.reader.problem(f"headers_env.{header}", "must name an environment variable (letters, digits, _)")
            elif variable not in os.environ:
                self.reader.problem(f"headers_env.{header}", f"names {variable}, which is not set in the environment")
            elif any(c in os.environ[variable] for c in "\r\n\0"):
                self.reader.problem(f"headers_env.{header}", f"names {variable}, whose value holds a line break")
            else:
                pairs.append((header, variable))
                values[header] = os.environ[variable]
        return tuple(pairs), values


def _repeats(lines: list[str]) -> list[str]:
    """"line N (repeats line M)" for every non-empty line whose label an earlier line has."""
    first, repeats = {}, []
    for number, line in enumerate(lines, 1):
        if line and line in first:
            repeats.append(f"line {number} (repeats line {first[line]})")
        first.setdefault(line, number)
    return repeats


def _numbers(items: list) -> str:
    """The first few of `items`, then how many more."""
    shown = ", ".join(str(item) for item in items[:_LISTED_LINES])
    return shown + (f" and {len(items) - _LISTED_LINES} more" if len(items) > _LISTED_LINES else "")
