"""A real redis-server for the tests, on a free loopback port, started and stopped by the tests
themselves (run_tests.sh installs Debian's redis-server where it is missing)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.servers import free_port


def require_redis_server() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but redis-server is missing (run_tests.sh installs it)")
        pytest.skip("redis-server is not installed (./run_tests.sh installs it with apt-get)")
    return binary


class RedisServer:
    """One redis-server process: start, stop (SIGKILL, like a crash), start again on the same port."""

    def __init__(self, workdir: Path, *extra: str):
        self.binary = require_redis_server()
        self.workdir, self.extra = workdir, extra
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no",
                   "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru", *self.extra]
        with open(self.workdir / "redis.log", "a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited: {(self.workdir / 'redis.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise AssertionError("redis-server did not start listening")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but never answered (a hung Redis)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)
