"""What a start says first, and the frameworks' own start-up notices kept out of the log.

The first lines of a start say what is served and where: the port and the page's address, the
processes and inference places, each task's configured models with their state (a built-in's
weights present or missing, with the command that fetches them; a model folder's format, or its
engine), a disabled task with the variable that enables it, when models load, and the settings
that change what a client meets (API keys, where the cache and the report live).

TensorFlow, its absl logging and gRPC's C core write their own notices to standard error
(TensorFlow's CPU-instruction and oneDNN notes, absl's "All log messages before
absl::InitializeLog() is called are written to STDERR", on a GPU host the CUDA plugins'
registration errors), between the service's own lines. Unless FRAMEWORK_LOGS=true they are
turned off, through the frameworks' own variables, before any framework is imported; a value the
deployment set itself is kept. (LiteRT's one start-up line is held back where it is printed,
runtimes/tflite.py, when TF_CPP_MIN_LOG_LEVEL says so.)
"""
from __future__ import annotations

import json
import logging
import os
import urllib.parse
from collections.abc import MutableMapping
from pathlib import Path

from config import Settings
from contract import ModelUnavailable
from models.builtins import BUILTINS
from models.folder_spec import SPEC_FILE
from models.weights import PackagedFiles
from registry import TASKS
from runtimes.formats import FORMATS, default_runtime

log = logging.getLogger("image_service")

# The frameworks' own variables that keep their notices out of the log, and the values that do.
QUIET_FRAMEWORKS = {
    "TF_CPP_MIN_LOG_LEVEL": "3",   # TensorFlow's C++ logging (and absl's), errors included
    "GRPC_VERBOSITY": "NONE",      # gRPC's C core; the service logs each failed remote call itself
}


def quiet_frameworks(settings: Settings, environ: MutableMapping[str, str] = os.environ) -> None:
    """Set the frameworks' log variables (before any framework is imported) unless
    FRAMEWORK_LOGS=true; a variable the deployment set is left as it is."""
    if settings.framework_logs:
        return
    for name, value in QUIET_FRAMEWORKS.items():
        environ.setdefault(name, value)


def summary(settings: Settings) -> list[str]:
    """The start's first lines: what is served, where, with which models, and what is missing."""
    processes = (f"{settings.workers} serving processes (WORKERS), each" if settings.workers > 1
                 else "1 serving process")
    lines = [f"serving http://localhost:{settings.port}/ (the page; the API's description at /docs) "
             f"on port {settings.port}: {processes} with {settings.inference_concurrency} inference "
             f"places and a queue of {settings.max_queue}"]
    for task, entry in TASKS.items():
        names = settings.models_for(task)
        if not names:
            lines.append(f"{task}: disabled; set {entry.enable_variable}=true to enable it")
            continue
        described = [f"{name} ({model_state(settings, task, name)})" for name in names]
        lines.append(f"{task}: {', '.join(described)}; the default is {names[0]}")
    if any(settings.models_for(task) for task in TASKS):
        lines.append(when_models_load(settings))
    lines.append(access_and_stores(settings))
    return lines


def model_state(settings: Settings, task: str, name: str) -> str:
    """A configured model as a start can tell it without loading it."""
    builtin = BUILTINS.get(name)
    if builtin is not None and builtin.task == task:
        weights = builtin.weights
        if isinstance(weights, PackagedFiles):
            try:
                weights.paths()
            except ModelUnavailable as exc:
                return f"built-in, {exc.reason}"
            return f"built-in, its files from {weights.requirement}"
        if weights.path(settings.models_dir).is_file():
            return "built-in, weights present"
        fetch = f"weights missing: fetch them with `{weights.fetch_command}`"
        if settings.model_download:
            return f"built-in, {fetch}, or they are downloaded at its first load where there is internet"
        return f"built-in, {fetch} (MODEL_DOWNLOAD=false: it answers 503 until then)"
    return folder_state(settings.models_dir / name / SPEC_FILE)


def folder_state(spec_file: Path) -> str:
    """A model folder by its model.json's format and engine host or runtime, read without
    checking it: the start checks every folder next and says what is wrong, once."""
    try:
        raw = json.loads(spec_file.read_text())
        fmt = FORMATS[raw["format"]]
    except Exception:   # any problem is said by the check that follows
        return "model folder: its model.json is checked next"
    if fmt.remote:
        try:
            url = urllib.parse.urlsplit(str(raw.get("url", "")))
            host = f"{url.hostname}:{url.port}" if url.port else str(url.hostname)
        except ValueError:
            host = "?"
        return f"model folder, {fmt.name} on the engine at {host}"
    runtime = raw.get("runtime") or default_runtime(fmt)
    return f"model folder, {fmt.name} file run by {runtime}"


def when_models_load(settings: Settings) -> str:
    runtime = f"built-in networks run on {settings.inference_runtime}"
    if settings.inference_runtime == "openvino":
        runtime += f" ({settings.inference_precision})"
    if settings.preload_models:
        return f"models load now, in the background: /ready answers 200 once every one is ready; {runtime}"
    return (f"each model loads at its first request (PRELOAD_MODELS=true loads them at the start, "
            f"for a readiness check); {runtime}")


def access_and_stores(settings: Settings) -> str:
    keys = (f"API keys required ({len(settings.api_keys)} configured)" if settings.api_keys
            else "no API key required (API_KEYS unset)")
    if settings.redis_url:
        stores = f"result cache and /report in Redis, key prefix {settings.cache_prefix}"
    else:
        stores = "result cache and /report in this process' memory (REDIS_URL unset)"
    frameworks = ("frameworks' own logs shown (FRAMEWORK_LOGS=true)" if settings.framework_logs
                  else "frameworks' own notices off (FRAMEWORK_LOGS=true shows them)")
    return f"{keys}; {stores}; {frameworks}"


def announce(settings: Settings) -> None:
    for line in summary(settings):
        log.info("%s", line)
