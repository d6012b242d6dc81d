"""Settings read once from the environment and validated together.

Every bad variable is reported in one message so an operator fixes the deployment in one
pass; `Settings.from_env` raises `ConfigError` and `app.main` exits non-zero with it.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Mapping

CLASSIFIER_NAMES = ("mobilenet", "resnet", "inception", "densenet")
DETECTOR_NAMES = ("yolo", "tiny_yolo", "retina")

# Every environment variable the service reads (README, Dockerfile and the Nomad job list them).
VARIABLES = (
    "IMAGE_CLASSIFICATION_ENABLED", "IMAGE_CLASSIFICATION_MODEL", "OBJECT_DETECTION_ENABLED",
    "OBJECT_DETECTION_MODEL", "MODELS_DIR", "MODEL_DOWNLOAD", "PRELOAD_MODELS", "WAITRESS_THREADS",
    "PORT", "MAX_UPLOAD_MB", "MAX_IMAGE_PIXELS", "FETCH_ALLOW_HOSTS", "MAX_BATCH", "CACHE_MAXSIZE",
    "CACHE_TTL", "MONITOR_WINDOW", "REPORT_TOP_N", "API_KEYS", "MAX_QUEUE", "INFERENCE_TIMEOUT_S",
    "DRAIN_SECONDS", "CHANNEL_TIMEOUT_S", "CONNECTION_LIMIT", "MAX_BATCH_SIZE", "BATCH_TIMEOUT_MS",
    "INTRA_OP_THREADS", "INTER_OP_THREADS",
)

# A custom model is a folder MODELS_DIR/<name>/ with a model.json; names stay URL- and path-safe.
CUSTOM_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
CUSTOM_SPEC_FILE = "model.json"

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


class ConfigError(Exception):
    """One or more environment variables are invalid; the message lists all of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "Invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclasses.dataclass(frozen=True)
class Settings:
    classification_enabled: bool = False
    classification_models: tuple[str, ...] = ("mobilenet",)  # the first is the default
    detection_enabled: bool = False
    detection_models: tuple[str, ...] = ("yolo",)
    models_dir: Path = Path("./models")
    model_download: bool = True
    preload_models: bool = False
    waitress_threads: int = 4
    port: int = 5001
    max_upload_mb: int = 10
    max_image_pixels: int = 40_000_000
    max_image_side: int = 10_000
    # Seconds before a failed model load may be tried again (not on every request).
    load_retry_seconds: float = 60.0
    fetch_allow_hosts: frozenset[str] = frozenset()
    fetch_timeout: float = 10.0
    max_batch: int = 16
    cache_maxsize: int = 1024
    cache_ttl: int = 3600
    monitor_window: int = 3 * 24 * 3600
    report_top_n: int = 10
    api_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)  # never printed
    max_queue: int = 8                 # requests that may wait for an inference place
    inference_timeout: float = 30.0    # seconds per model call before 504
    drain_seconds: float = 25.0        # SIGTERM: time in-flight requests get to finish
    channel_timeout: int = 30          # waitress: idle or stalled connections are closed after
    connection_limit: int = 500        # waitress: open connections at most
    max_batch_size: int = 8            # micro-batching: images per batched model call
    batch_timeout_ms: int = 5          # ...and how long a forming batch waits for announced requests
    intra_op_threads: int = 0          # threads inside one model call (0: the CPU count)
    inter_op_threads: int = 1          # TensorFlow/torch operations run side by side

    @property
    def server_threads(self) -> int:
        """waitress threads: the inference workers, the queue, and 2 kept for health checks."""
        return self.waitress_threads + self.max_queue + 2

    @property
    def classification_model(self) -> str:
        return self.classification_models[0]

    @property
    def detection_model(self) -> str:
        return self.detection_models[0]

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        models_dir = Path(reader.text("MODELS_DIR", "./models"))
        threads = reader.integer("WAITRESS_THREADS", 4, minimum=1, maximum=256)
        settings = cls(
            classification_enabled=reader.boolean(
                "IMAGE_CLASSIFICATION_ENABLED", False, alias="IMAGE_CLASSIFICATION"),
            classification_models=reader.models(
                "IMAGE_CLASSIFICATION_MODEL", "mobilenet", CLASSIFIER_NAMES, models_dir),
            detection_enabled=reader.boolean("OBJECT_DETECTION_ENABLED", False),
            detection_models=reader.models(
                "OBJECT_DETECTION_MODEL", "yolo", DETECTOR_NAMES, models_dir),
            models_dir=models_dir,
            model_download=reader.boolean("MODEL_DOWNLOAD", True),
            preload_models=reader.boolean("PRELOAD_MODELS", False),
            waitress_threads=threads,
            max_queue=reader.integer("MAX_QUEUE", 2 * threads, minimum=0, maximum=4096),
            inference_timeout=reader.integer("INFERENCE_TIMEOUT_S", 30, minimum=1, maximum=3600),
            drain_seconds=reader.integer("DRAIN_SECONDS", 25, minimum=0, maximum=3600),
            channel_timeout=reader.integer("CHANNEL_TIMEOUT_S", 30, minimum=1, maximum=3600),
            connection_limit=reader.integer("CONNECTION_LIMIT", 500, minimum=10, maximum=100_000),
            max_batch_size=reader.integer("MAX_BATCH_SIZE", 8, minimum=1, maximum=256),
            batch_timeout_ms=reader.integer("BATCH_TIMEOUT_MS", 5, minimum=0, maximum=1000),
            intra_op_threads=reader.integer("INTRA_OP_THREADS", 0, minimum=0, maximum=256),
            inter_op_threads=reader.integer("INTER_OP_THREADS", 1, minimum=1, maximum=256),
            port=reader.integer("PORT", 5001, minimum=1, maximum=65535),
            max_upload_mb=reader.integer("MAX_UPLOAD_MB", 10, minimum=1, maximum=1024),
            max_image_pixels=reader.integer(
                "MAX_IMAGE_PIXELS", 40_000_000, minimum=1, maximum=1_000_000_000
            ),
            fetch_allow_hosts=frozenset(reader.items("FETCH_ALLOW_HOSTS", lower=True)),
            max_batch=reader.integer("MAX_BATCH", 16, minimum=1, maximum=256),
            cache_maxsize=reader.integer("CACHE_MAXSIZE", 1024, minimum=0, maximum=10_000_000),
            cache_ttl=reader.integer("CACHE_TTL", 3600, minimum=1, maximum=365 * 24 * 3600),
            monitor_window=reader.integer("MONITOR_WINDOW", 3 * 24 * 3600, minimum=1,
                                          maximum=365 * 24 * 3600),
            report_top_n=reader.integer("REPORT_TOP_N", 10, minimum=1, maximum=10_000),
            api_keys=tuple(reader.items("API_KEYS", lower=False)),
        )
        if reader.problems:
            raise ConfigError(reader.problems)
        return settings


class _Reader:
    """Reads variables with casts, collecting every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.problems: list[str] = []

    def _raw(self, name: str, alias: str | None = None) -> tuple[str, str | None]:
        if name in self.env:
            return name, self.env[name]
        if alias and alias in self.env:
            return alias, self.env[alias]
        return name, None

    def text(self, name: str, default: str) -> str:
        _, raw = self._raw(name)
        return default if raw is None or raw.strip() == "" else raw.strip()

    def boolean(self, name: str, default: bool, alias: str | None = None) -> bool:
        used, raw = self._raw(name, alias)
        if raw is None or raw.strip() == "":
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        self.problems.append(
            f"{used}={raw!r} is not a valid boolean; use one of true/false, 1/0, yes/no, on/off"
        )
        return default

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        _, raw = self._raw(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw.strip().replace("_", ""))
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not a whole number")
            return default
        if not minimum <= value <= maximum:
            self.problems.append(f"{name}={value} is out of range; use {minimum} to {maximum}")
            return default
        return value

    def items(self, name: str, *, lower: bool) -> list[str]:
        _, raw = self._raw(name)
        parts = [p.strip() for p in (raw or "").split(",") if p.strip()]
        return [p.lower() for p in parts] if lower else parts

    def models(self, name: str, default: str, builtins: tuple[str, ...],
               models_dir: Path) -> tuple[str, ...]:
        """A comma-separated list of built-in names or custom model folders; first = default."""
        _, raw = self._raw(name)
        if raw is None or raw.strip() == "":
            return (default,)
        names = [part.strip().lower() for part in raw.split(",") if part.strip()]
        valid = []
        for model in names:
            if model in builtins:
                valid.append(model)
            elif CUSTOM_NAME.match(model) and (models_dir / model / CUSTOM_SPEC_FILE).is_file():
                valid.append(model)
            else:
                self.problems.append(
                    f"{name}: {model!r} is not a known model; valid choices: "
                    f"{', '.join(builtins)}, or the name of a folder in MODELS_DIR that holds "
                    f"a {CUSTOM_SPEC_FILE}"
                )
        if len(set(valid)) != len(valid):
            self.problems.append(f"{name}={raw!r} names a model twice")
        return tuple(dict.fromkeys(valid)) or (default,)
