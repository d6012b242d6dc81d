"""Settings read once from the environment and validated together.

Each setting is declared once, below: its field, its variable, its default and its range.
Every bad variable is reported in one message so an operator fixes the deployment in one
pass; `Settings.from_env` raises `ConfigError` and `app.main` exits non-zero with it.
"""
from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from pathlib import Path
from typing import Mapping

from api.parsing import BOOLEAN_HELP, parse_bool, plain_number
from contract import FRAMEWORK, OPENVINO, InferenceOptions
from dataplane.report import MAX_IMAGES
from models.folder_spec import FOLDER_NAME, SPEC_FILE
from registry import TASKS
from runtimes import openvino

# An API key: printable ASCII, no space (0x21-0x7e); the comma separates keys in API_KEYS.
API_KEY = re.compile(r"[\x21-\x7e]+")

# A browser's Origin (CORS_ORIGINS): http or https, a host name or address, an optional port; no path.
ORIGIN = re.compile(r"(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::([0-9]{1,5}))?")

# CACHE_PREFIX starts every Redis key this deployment writes.
REDIS_PREFIX = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

def redis_url_problem(url: str) -> str | None:
    """Why `url` is not a Redis URL the service can use, or None."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError for a port that is not one
    except ValueError:
        return "is not a valid URL (host or port)"
    if parts.scheme not in ("redis", "rediss"):
        return "must start with redis:// or rediss:// (TLS)"
    if not parts.hostname:
        return "names no host"
    if port == 0:
        return "is not a valid URL (host or port)"
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        return "has a path that is not a database number (e.g. /0)"
    return None


class ConfigError(Exception):
    """One or more environment variables are invalid; the message lists all of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "Invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def _var(variable: str, default, kind: str = "int", minimum: int = 0, maximum: int = 0,
         alias: str | None = None, choices: tuple[str, ...] = (), former: str | None = None,
         spellings: dict[str, str] | None = None, **field_options):
    """A setting read from `variable`: the field's default is the variable's default. `alias`:
    another name read when `variable` is not set; `former`: the variable's old name, still read
    (with one notice at start-up); `spellings`: old values of a choice and what they mean now."""
    metadata = {"variable": variable, "kind": kind, "minimum": minimum, "maximum": maximum,
                "alias": alias or former, "choices": choices, "former": former, "spellings": spellings or {}}
    return dataclasses.field(default=default, metadata=metadata, **field_options)


_DAY = 24 * 3600
_CLASSIFY, _DETECT, _FACE = TASKS["classification"], TASKS["detection"], TASKS["face"]


@dataclasses.dataclass(frozen=True)
class Settings:
    classification_enabled: bool = _var(_CLASSIFY.enable_variable, False, "bool", alias=_CLASSIFY.enable_alias)
    # Model lists: the first is the task's default.
    classification_models: tuple[str, ...] = _var(_CLASSIFY.model_variable, (_CLASSIFY.default_model,), "models")
    detection_enabled: bool = _var(_DETECT.enable_variable, False, "bool")
    detection_models: tuple[str, ...] = _var(_DETECT.model_variable, (_DETECT.default_model,), "models")
    face_enabled: bool = _var(_FACE.enable_variable, False, "bool")
    face_models: tuple[str, ...] = _var(_FACE.model_variable, (_FACE.default_model,), "models")
    # Faces: a registered face is named when its embedding lies within this distance of the
    # photo's face (0: the model's published same-person distance, 0.6 for dlib).
    face_max_distance: float = _var("FACE_MAX_DISTANCE", 0.0, "decimal", minimum=0, maximum=2)
    # The face store: SQLite in DATA_DIR, or PostgreSQL at DATABASE_URL (several replicas). Never printed.
    data_dir: Path = _var("DATA_DIR", Path("./data"), "path")
    database_url: str = _var("DATABASE_URL", "", "database_url", repr=False)
    models_dir: Path = _var("MODELS_DIR", Path("./models"), "path")
    model_download: bool = _var("MODEL_DOWNLOAD", True, "bool")
    preload_models: bool = _var("PRELOAD_MODELS", False, "bool")
    # Serving processes on the port (serving/workers.py); each loads its own models.
    workers: int = _var("WORKERS", 1, minimum=1, maximum=64)
    # Inference places: requests decoded and prepared at once (a request waiting for a
    # micro-batched model call hands its place on).
    inference_concurrency: int = _var("INFERENCE_CONCURRENCY", 4, minimum=1, maximum=256, former="WAITRESS_THREADS")
    # Requests that may wait for an inference place; unset: twice INFERENCE_CONCURRENCY.
    max_queue: int = _var("MAX_QUEUE", 8, minimum=0, maximum=4096)
    inference_timeout: float = _var("INFERENCE_TIMEOUT_S", 30, minimum=1, maximum=3600)
    drain_seconds: float = _var("DRAIN_SECONDS", 25, minimum=0, maximum=3600)
    # The drain lasts at least this long, so health checks see /ready turn 503 before the port closes.
    drain_grace: float = _var("DRAIN_GRACE_S", 5, minimum=0, maximum=3600)
    channel_timeout: int = _var("CHANNEL_TIMEOUT_S", 30, minimum=1, maximum=3600)
    connection_limit: int = _var("CONNECTION_LIMIT", 10_000, minimum=10, maximum=1_000_000)
    # A request gets REQUEST_GRACE_S, plus a second per REQUEST_MIN_RATE bytes, to arrive whole.
    request_grace: float = _var("REQUEST_GRACE_S", 10, minimum=1, maximum=3600)
    request_min_rate: int = _var("REQUEST_MIN_RATE", 500, minimum=1, maximum=100_000_000)
    max_batch_size: int = _var("MAX_BATCH_SIZE", 8, minimum=1, maximum=256)        # images per batched model call
    batch_timeout_ms: int = _var("BATCH_TIMEOUT_MS", 5, minimum=0, maximum=1000)   # a forming batch waits this long
    intra_op_threads: int = _var("INTRA_OP_THREADS", 0, minimum=0, maximum=256)    # 0: the CPU count
    inter_op_threads: int = _var("INTER_OP_THREADS", 1, minimum=1, maximum=256)
    # What executes the built-in networks on a CPU, and OpenVINO's arithmetic (bf16: faster, not the same answers).
    inference_runtime: str = _var("INFERENCE_RUNTIME", OPENVINO, "choice", choices=(OPENVINO, FRAMEWORK),
                                  spellings={"tensorflow": FRAMEWORK})
    inference_precision: str = _var("INFERENCE_PRECISION", "f32", "choice", choices=("f32", "bf16"))
    # The OpenVINO device (CPU, GPU, NPU, AUTO or a list): one this host has, or the start stops.
    openvino_device: str = _var("OPENVINO_DEVICE", "CPU", "openvino_device")
    # The frameworks' own log lines (TensorFlow, absl, gRPC, LiteRT): off unless asked for (serving.startup).
    framework_logs: bool = _var("FRAMEWORK_LOGS", False, "bool")
    port: int = _var("PORT", 5001, minimum=1, maximum=65535)
    max_upload_mb: int = _var("MAX_UPLOAD_MB", 10, minimum=1, maximum=1024)
    max_image_pixels: int = _var("MAX_IMAGE_PIXELS", 40_000_000, minimum=1, maximum=1_000_000_000)
    fetch_allow_hosts: frozenset[str] = _var("FETCH_ALLOW_HOSTS", frozenset(), "hosts")
    max_request_images: int = _var("MAX_IMAGES_PER_REQUEST", 16, minimum=1, maximum=256, former="MAX_BATCH")
    cache_maxsize: int = _var("CACHE_MAXSIZE", 1024, minimum=0, maximum=10_000_000)
    cache_ttl: int = _var("CACHE_TTL", 3600, minimum=1, maximum=365 * _DAY)
    monitor_window: int = _var("MONITOR_WINDOW", 3 * _DAY, minimum=1, maximum=365 * _DAY)
    report_top_n: int = _var("REPORT_TOP_N", 10, minimum=1, maximum=10_000)
    # Shared cache and report (Redis); unset: each replica keeps its own in memory. Never printed.
    redis_url: str = _var("REDIS_URL", "", "redis_url", repr=False)
    redis_password: str = _var("REDIS_PASSWORD", "", "secret", repr=False)
    cache_prefix: str = _var("CACHE_PREFIX", "ics", "prefix")   # several deployments share one Redis
    api_keys: tuple[str, ...] = _var("API_KEYS", (), "keys", repr=False)  # never printed
    # Web pages of other origins that may call the API from a browser: () none (no CORS headers),
    # ("*",) any, or the listed origins.
    cors_origins: tuple[str, ...] = _var("CORS_ORIGINS", (), "origins")
    # Fixed, not configurable:
    max_image_side: int = 10_000
    load_retry_seconds: float = 60.0   # a failed model load is tried again after this long
    fetch_timeout: float = 10.0
    # What start-up says about the configuration besides problems (a former variable name in use).
    notices: tuple[str, ...] = ()

    @property
    def inference_options(self) -> InferenceOptions:
        return InferenceOptions(runtime=self.inference_runtime, precision=self.inference_precision,
                                device=self.openvino_device, intra_op_threads=self.intra_op_threads,
                                inter_op_threads=self.inter_op_threads)
    # Distinct images the usage report tracks over MONITOR_WINDOW: its memory bound (a shorter
    # window holds less); not a variable, so the documented bound is the bound.
    report_max_images: int = MAX_IMAGES

    @property
    def server_threads(self) -> int:
        """waitress threads: the inference places, the queue, and 2 kept for health checks."""
        return self.inference_concurrency + self.max_queue + 2

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    def models_for(self, task: str) -> tuple[str, ...]:
        """The configured models of an enabled task (the first is its default); () when it is off."""
        enabled, models = _TASK_FIELDS[task]
        return getattr(self, models) if getattr(self, enabled) else ()

    def default_model(self, task: str) -> str:
        return getattr(self, _TASK_FIELDS[task][1])[0]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        reader = _Reader(os.environ if environ is None else environ)
        values = {}
        models_dir = reader.read(_FIELDS["models_dir"], {})
        for field in dataclasses.fields(cls):
            if field.metadata:
                values[field.name] = reader.read(field, {"models_dir": models_dir, **values})
        if "MAX_QUEUE" not in reader.given:
            values["max_queue"] = 2 * values["inference_concurrency"]
        if reader.problems:
            raise ConfigError(reader.problems)
        return cls(**values, notices=tuple(reader.notices))


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
# Each task's two fields, by name: <task>_enabled and <task>_models.
_TASK_FIELDS = {task: (f"{task}_enabled", f"{task}_models") for task in TASKS}
# Every environment variable the service reads (docs/configuration.md and the Nomad job list them).
VARIABLES = tuple(f.metadata["variable"] for f in dataclasses.fields(Settings) if f.metadata)


class _Reader:
    """Reads variables with casts, collecting every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.problems: list[str] = []
        self.notices: list[str] = []
        self.given: set[str] = set()

    def read(self, field: dataclasses.Field, earlier: dict):
        meta = field.metadata
        name = meta["variable"]
        used = name if name in self.env or not meta["alias"] or meta["alias"] not in self.env else meta["alias"]
        raw = self.env.get(used)
        if raw is None or raw.strip() == "":
            return field.default
        self.given.add(name)
        if used == meta["former"]:
            self.notices.append(f"{used} is the former name of {name}: it is still read; rename it")
        return getattr(self, "_" + meta["kind"])(used, raw.strip(), field, earlier)

    def _bool(self, name, raw, field, earlier):
        value = parse_bool(raw)
        if value is None:
            self.problems.append(f"{name}={raw!r} is not a valid boolean; {BOOLEAN_HELP}")
            return field.default
        return value

    def _int(self, name, raw, field, earlier):
        meta = field.metadata
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not a whole number")
            return field.default
        if not meta["minimum"] <= value <= meta["maximum"]:
            self.problems.append(f"{name}={value} is out of range; use {meta['minimum']} to {meta['maximum']}")
            return field.default
        return value

    def _choice(self, name, raw, field, earlier):
        value, choices = raw.lower(), field.metadata["choices"]
        if value in field.metadata["spellings"]:
            now = field.metadata["spellings"][value]
            self.notices.append(f"{name}={raw} is the former spelling of {name}={now}: it still works; use {now}")
            value = now
        if value not in choices:
            self.problems.append(f"{name}={raw!r} is not valid; use one of {', '.join(choices)}")
            return field.default
        return value

    def _path(self, name, raw, field, earlier):
        return Path(raw)

    @staticmethod
    def _items(raw: str) -> list[str]:
        return [part.strip() for part in raw.split(",") if part.strip()]

    def _hosts(self, name, raw, field, earlier):
        return frozenset(item.lower() for item in self._items(raw))

    def _keys(self, name, raw, field, earlier):
        """Printable ASCII without spaces (0x21-0x7e; commas separate keys): a key every client
        can send the same way, as a header or a form field. A bad key is never echoed."""
        keys = tuple(self._items(raw))
        for number, key in enumerate(keys, 1):
            if not API_KEY.fullmatch(key):
                self.problems.append(f"{name}: key {number} of {len(keys)} holds a character outside printable "
                                     "ASCII without spaces (0x21-0x7e); the value is not shown")
        return keys

    def _origins(self, name, raw, field, earlier):
        """'*', or origins as a browser sends them in its Origin header: scheme://host[:port],
        no path, compared without regard to case. `null` (sandboxed pages, files) is refused: any
        such page would match it."""
        items = tuple(item.lower() for item in self._items(raw))
        if items == ("*",):
            return items
        for item in items:
            match = ORIGIN.fullmatch(item)
            if item == "*":
                self.problems.append(f"{name}: '*' allows every origin: give it alone, not in a list")
            elif item == "null":
                self.problems.append(f"{name}: 'null' is the origin of sandboxed pages and files, which any "
                                     "page can be: name the origins instead")
            elif not match or (match.group(3) and not 1 <= int(match.group(3)) <= 65535):
                self.problems.append(f"{name}: {item!r} is not an origin; write it as a browser sends it, "
                                     "scheme://host[:port] without a path (e.g. https://dashboard.example:8443)")
        if len(set(items)) != len(items):
            self.problems.append(f"{name} names an origin twice")
        return tuple(dict.fromkeys(items))

    def _openvino_device(self, name, raw, field, earlier):
        """OpenVINO's device names, in capitals (read without regard to case); a device other
        than the default CPU is asked of OpenVINO now: one this host lacks stops the start."""
        device = raw.upper()
        problem = openvino.device_problem(device)
        if problem:
            self.problems.append(f"{name}={raw!r}: {problem}")
            return field.default
        return device

    def _secret(self, name, raw, field, earlier):
        return raw

    def _redis_url(self, name, raw, field, earlier):
        """redis:// or rediss:// with a host; the value may hold a password, so it is never echoed."""
        problem = redis_url_problem(raw)
        if problem:
            self.problems.append(f"{name} {problem} (the value is not shown: it may hold a password)")
            return field.default
        return raw

    def _decimal(self, name, raw, field, earlier):
        meta = field.metadata
        if not plain_number(raw, whole=False) or not meta["minimum"] <= float(raw) <= meta["maximum"]:
            self.problems.append(f"{name}={raw!r} is not a number from {meta['minimum']} to {meta['maximum']}")
            return field.default
        return float(raw)

    def _database_url(self, name, raw, field, earlier):
        """postgresql:// (or postgres://) with a host or a socket; the value may hold a password,
        so it is never echoed."""
        parts = urllib.parse.urlsplit(raw)
        if parts.scheme not in ("postgresql", "postgres") or not (parts.netloc or "host=" in parts.query):
            self.problems.append(f"{name} must be a postgresql://user:password@host:port/database URL "
                                 "(the value is not shown: it may hold a password)")
            return field.default
        return raw

    def _prefix(self, name, raw, field, earlier):
        if not REDIS_PREFIX.match(raw):
            self.problems.append(f"{name}={raw!r} is not a key prefix; use 1-64 letters, digits, '_', '-', '.'")
            return field.default
        return raw

    def _models(self, name, raw, field, earlier):
        """A comma-separated list of built-in names or model folders; the first is the default."""
        task = next(t for t in TASKS.values() if t.model_variable == name)
        models_dir = earlier["models_dir"]
        valid = []
        for model in (item.lower() for item in self._items(raw)):
            if model in task.builtins or (FOLDER_NAME.match(model) and (models_dir / model / SPEC_FILE).is_file()):
                valid.append(model)
            else:
                self.problems.append(
                    f"{name}: {model!r} is not a known model; valid choices: {', '.join(task.builtins)}, "
                    f"or the name of a folder in MODELS_DIR that holds a {SPEC_FILE}")
        if len(set(valid)) != len(valid):
            self.problems.append(f"{name}={raw!r} names a model twice")
        return tuple(dict.fromkeys(valid)) or field.default
