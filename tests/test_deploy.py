"""Deployment files: they parse and agree with the code. The container engine and Nomad do
not run on the development machines: the entry command is run here with the image's
environment instead."""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import hcl2
import pytest
import requests
import yaml

from config import VARIABLES, Settings
from tests.support.paths import ROOT
from tests.support.servers import free_port, wait_until

DEFAULTS = Settings()


def unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def block(blocks, name=None):
    """hcl2 gives blocks as lists of dicts; labelled blocks are keyed by their quoted label."""
    item = blocks[0]
    return item[f'"{name}"'] if name else item


def seconds(duration: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)", unquote(duration)).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


@pytest.fixture(scope="module")
def nomad():
    with open(ROOT / "nomad" / "image-classification.nomad.hcl") as f:
        job = block(hcl2.load(f)["job"], "image-classification")
    group = block(job["group"], "api")
    return job, group, block(group["task"], "server")


def dockerfile_env(path: Path) -> dict[str, str]:
    text = (ROOT / path).read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def test_nomad_job_is_a_scalable_service_with_both_checks(nomad):
    job, group, task = nomad
    assert unquote(job["type"]) == "service" and group["count"] >= 1
    service = group["service"][0]
    assert unquote(service["provider"]) == "consul"
    checks = {unquote(c["path"]): c for c in service["check"]}
    assert set(checks) == {"/health", "/ready"}
    assert "check_restart" in checks["/health"] and "check_restart" not in checks["/ready"]
    assert block(group["network"])["port"][0]['"http"']["to"] == DEFAULTS.port


def test_nomad_kill_timeout_outlasts_the_drain_and_env_matches_the_code(nomad):
    _, _, task = nomad
    env = {k: unquote(v) for k, v in block(task["env"]).items() if not k.startswith("__")}
    assert set(env) == set(VARIABLES)
    settings = Settings.from_env(env)  # every value is valid
    assert seconds(task["kill_timeout"]) > settings.drain_seconds
    assert unquote(task["kill_signal"]) == "SIGTERM"
    # The job states the code's defaults (a deliberate change to either shows up here).
    for name, field in (("PORT", "port"), ("WAITRESS_THREADS", "waitress_threads"), ("MAX_QUEUE", "max_queue"),
                        ("DRAIN_SECONDS", "drain_seconds"), ("INFERENCE_TIMEOUT_S", "inference_timeout"),
                        ("MAX_BATCH", "max_request_images"), ("CACHE_MAXSIZE", "cache_maxsize"), ("CACHE_TTL", "cache_ttl"),
                        ("MONITOR_WINDOW", "monitor_window"), ("CHANNEL_TIMEOUT_S", "channel_timeout"),
                        ("CONNECTION_LIMIT", "connection_limit"), ("MAX_UPLOAD_MB", "max_upload_mb"),
                        ("MAX_BATCH_SIZE", "max_batch_size"), ("BATCH_TIMEOUT_MS", "batch_timeout_ms"),
                        ("INTER_OP_THREADS", "inter_op_threads"),
                        ("MAX_IMAGE_PIXELS", "max_image_pixels")):
        assert getattr(settings, field) == getattr(DEFAULTS, field), name
    assert settings.preload_models and not settings.model_download
    resources = block(task["resources"])
    assert settings.intra_op_threads == resources["cpu"] // 1000  # threads match the CPUs asked for
    assert resources["memory"] >= 2400  # measured 2.33 GB peak with mobilenet + yolo (docs/reliability.md)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles(dockerfile):
    text = (ROOT / dockerfile).read_text()
    env = dockerfile_env(Path(dockerfile))
    settings = Settings.from_env(env)
    assert settings.preload_models and settings.classification_enabled and settings.detection_enabled
    assert env["MODEL_DOWNLOAD"] == "false" and env["MODELS_DIR"] == "/app/models"
    assert re.search(r"^USER app$", text, re.M), "runs as a non-root user"
    assert "python -m models.download ${MODELS}" in text, "weights fetched and verified at build time"
    assert "HEALTHCHECK" in text and "/health" in text
    assert 'ENTRYPOINT ["/app/boot.sh"]' in text
    assert "exec python app.py" in (ROOT / "boot.sh").read_text()
    assert "pip install -r requirements" in text


def test_compose_and_drone():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["image-classification"]
    env = {k: str(v) for k, v in service["environment"].items()}
    settings = Settings.from_env(env)
    assert seconds(service["stop_grace_period"]) > settings.drain_seconds
    assert service["ports"] == ["5001:5001"]
    drone = yaml.safe_load((ROOT / ".drone.yml").read_text())
    steps = {step["name"]: step for step in drone["steps"]}
    assert "ruff check ." in " ".join(steps["lint"]["commands"])
    assert "./run_tests.sh" in steps["test"]["commands"]
    assert steps["build-image"]["when"]["branch"] == ["main"]


@pytest.mark.slow
def test_the_entry_command_starts_the_service_with_the_images_environment(random_models_dir, tmp_path):
    """boot.sh, as the container runs it, with the Dockerfile's ENV (MODELS_DIR pointing at
    weight files of the real architectures) answers /health, then /ready, then drains."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(dockerfile_env(Path("Dockerfile")))
    port = free_port()
    env.update(MODELS_DIR=str(random_models_dir), PORT=str(port),
               PATH=f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}")
    with open(tmp_path / "boot.log", "w") as log:
        process = subprocess.Popen(["./boot.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(url + "/health", timeout=2).status_code == 200, 60, "liveness")
        wait_until(lambda: requests.get(url + "/ready", timeout=2).status_code == 200, 300, "readiness")
        assert requests.get(url + "/status", timeout=5).json()["features"]["detection"]["model"] == "yolo"
        process.terminate()
        started = time.monotonic()
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - started < 25
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
