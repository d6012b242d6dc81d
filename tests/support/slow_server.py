"""`python -m tests.support.slow_app` as a real process on a free loopback port: the server path
with a fake classifier whose calls take FAKE_DELAY_S (tests of overload, drain and workers)."""
from __future__ import annotations

import os
import subprocess
import sys

import requests

from tests.support import imaging
from tests.support.paths import ROOT
from tests.support.servers import free_port, wait_until


class SlowServer:
    def __init__(self, tmp_path, command=("-m", "tests.support.slow_app"), wait: bool = True, **env):
        """Start `python <command>` with `env`; `wait`: until /health answers."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"server-{self.port}.log"
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_", "OBJECT_"))}
        # DRAIN_GRACE_S: no health checks to wait for unless a test says so.
        environment.update(IMAGE_CLASSIFICATION_ENABLED="true", PORT=str(self.port), MODELS_DIR=str(tmp_path),
                           DRAIN_GRACE_S="0")
        environment.update({k: str(v) for k, v in env.items()})
        with open(self.log, "w") as log:
            self.process = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=environment,
                                            stdout=log, stderr=subprocess.STDOUT)
        if wait:
            wait_until(lambda: requests.get(self.url + "/health", timeout=1).ok, 30, "liveness")

    def classify(self, seed: int = 0, timeout: float = 60):
        image = imaging.jpeg(size=(16, 16), color=(seed % 256, (seed // 256) % 256, 7))
        return requests.post(self.url + "/classify-image", files={"image": ("a.jpg", image)}, timeout=timeout)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def servers_made(make):
    """A fixture's body: yields a function starting servers with `make(**env)`, and stops every
    one it started afterwards (printing the end of its log, which pytest shows on failure)."""
    started = []

    def start(**env):
        server = make(**env)
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()
        print(server.log.read_text()[-4000:])
