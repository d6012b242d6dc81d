"""A real inference engine for the tests and the benchmark: KServe's model server
(tests/support/kserve_engine.py) in its own virtualenv, on free loopback ports (REST and gRPC), hosting the
small models from ../shared; and remote model folders that point at it.

Locally a missing .venv-engine skips the tests that need it (./run_tests.sh creates it); in CI
(CI=true) it fails them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support.paths import ROOT
from tests.support.servers import free_port, wait_until
from tests.support.shared_models import FOLDERS, require_shared

ENGINE_PYTHON = ROOT / ".venv-engine" / "bin" / "python"
ENGINE_SCRIPT = ROOT / "tests" / "support" / "kserve_engine.py"
# The shared models the engine hosts, by the names the folders in shared_models.py use.
ENGINE_MODELS = {"mobilenet_v2_quant": "models/classify/mobilenet_v2_1.0_224_quant.tflite",
                 "yolov5n_onnx": "models/detect/yolov5n_640.onnx"}


def require_engine() -> Path:
    if not ENGINE_PYTHON.exists():
        message = f"{ENGINE_PYTHON.relative_to(ROOT)} is missing: ./run_tests.sh creates it (requirements-engine.txt)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return ENGINE_PYTHON


class Engine:
    """One KServe model server process; `stop()` and `start()` again keep its port."""

    def __init__(self, models: list[str] | dict[str, str], log_path: Path, variants: bool = False,
                 port: int | None = None, grpc_port: int | None = None):
        """`models`: names from ENGINE_MODELS, or {name to serve: path under ../shared}."""
        self.models = models if isinstance(models, dict) else {name: ENGINE_MODELS[name] for name in models}
        self.variants, self.log_path = variants, log_path
        self.port, self.grpc_port = port or free_port(), grpc_port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_url = f"grpc://127.0.0.1:{self.grpc_port}"   # the same models over gRPC
        self.process: subprocess.Popen | None = None

    def start(self, wait: float = 90.0) -> Engine:
        python, shared = require_engine(), require_shared()
        args = [str(python), "-P", str(ENGINE_SCRIPT), "--http_port", str(self.port),
                "--grpc_port", str(self.grpc_port)]
        for name, relative in self.models.items():
            args += ["--model", f"{name}={shared / relative}"]
        if self.variants:
            args.append("--variants")
        with open(self.log_path, "a") as log:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONTRACEMALLOC"}
            self.process = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            env={**env, "PYTHONUNBUFFERED": "1"})
        try:
            wait_until(self._ready, wait, f"the engine on port {self.port} (log: {self.log_path})")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the engine exited with {self.process.returncode}; log: {self.log_path}")
        if requests.get(f"{self.url}/v2/health/ready", timeout=2).status_code != 200:
            return False
        try:  # the gRPC server starts next to the REST one
            socket.create_connection(("127.0.0.1", self.grpc_port), timeout=2).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def calls(self, model: str) -> int:
        """Predict calls the engine has counted for a model (its own Prometheus counter)."""
        return int(self.predict_seconds(model)[0])

    def predict_seconds(self, model: str) -> tuple[float, float]:
        """(calls, seconds) the engine has spent in the model's predict, by its own metrics."""
        text = requests.get(f"{self.url}/metrics", timeout=5).text
        found = []
        for suffix in ("count", "sum"):
            match = re.search(r'^request_predict_seconds_%s\{model_name="%s"\} (\S+)$' % (suffix, re.escape(model)),
                              text, re.M)
            found.append(float(match.group(1)) if match else 0.0)
        return found[0], found[1]


def remote_folder(models_dir: Path, name: str, like: str, **fields) -> Path:
    """A folder that names `like`'s model on a remote engine, with `like`'s labels and
    preprocessing; `fields` are the remote ones (format, url, model, ...) and overrides."""
    shared = require_shared()
    entry = FOLDERS[like]
    spec = {k: v for k, v in entry["json"].items() if k != "file"}
    spec.update(fields)
    folder = models_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared / entry["labels"], folder / "labels.txt")
    (folder / "model.json").write_text(json.dumps(spec, indent=2))
    return folder


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class FreezingProxy:
    """A TCP forwarder on a free loopback port in front of `upstream_port`. `freeze()` makes the
    connections open at that moment go silent both ways, without FIN or RST (what a lost host or
    a network partition looks like to the other end); connections made afterwards work."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[dict] = []
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def freeze(self) -> None:
        for connection in self._open:
            connection["frozen"] = True

    def close(self) -> None:
        for sock in (self._listener, *self._sockets):
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                return
            connection = {"frozen": False}
            self._open.append(connection)
            self._sockets += [downstream, upstream]
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink, connection), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, connection: dict) -> None:
        try:
            while data := source.recv(65536):
                if connection["frozen"]:
                    return   # drop it and read no more: the peer hears nothing, and no FIN is sent
                sink.sendall(data)
        except OSError:
            pass
