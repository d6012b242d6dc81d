"""Real processes for the tests: free loopback ports, waiting for readiness, `python app.py`."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.paths import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or not accepting yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def start_server(env_overrides: dict[str, str], log_path: Path, python: str = sys.executable
                 ) -> tuple[subprocess.Popen, str]:
    """Start `python app.py` (with `python`: another install's interpreter); its output goes to a
    file (a pipe nobody reads would fill up)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IMAGE_CLASSIFICATION", "OBJECT_DETECTION", "MODEL", "PRELOAD"))}
    # Tests stop servers with SIGTERM: no grace for health checks that are not there.
    env.update(PORT=str(port), DRAIN_GRACE_S="0")
    env.update(env_overrides)
    with open(log_path, "w") as log:
        process = subprocess.Popen([python, "app.py"], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def stop_server(process: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    """SIGTERM (the server drains), SIGKILL after `timeout`; then print the end of its log,
    which pytest shows when a test failed."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    print(log_path.read_text()[-5000:])
