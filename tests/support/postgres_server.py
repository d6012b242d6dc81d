"""A real PostgreSQL server for the tests (Debian's package; run_tests.sh installs it where it is
missing), on a free loopback port, in a throw-away data folder, started and stopped by the tests.
PostgreSQL refuses to run as root: as root the server runs as the package's `postgres` user."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.servers import free_port

USER, PASSWORD = "faces", "s3cret-pw"


def postgres_bin() -> Path:
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(p).parent for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but PostgreSQL is missing (run_tests.sh installs it)")
    pytest.skip("PostgreSQL is not installed (./run_tests.sh installs it with apt-get)")


class PostgresServer:
    """One postgres process: start, stop, start again on the same port."""

    def __init__(self):
        self.bin = postgres_bin()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="faces-pg-"))
        self.process: subprocess.Popen | None = None
        self._as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._as:
            os.chown(self.folder, self._as.pw_uid, self._as.pw_gid)
        (self.folder / "pw").write_text(PASSWORD)
        self._run([str(self.bin / "initdb"), "-D", str(self.folder / "data"), "-U", USER, "--pwfile",
                   str(self.folder / "pw"), "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8"])

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def _demote(self):
        if self._as:
            os.setgid(self._as.pw_gid)
            os.setuid(self._as.pw_uid)

    def _run(self, command: list[str]) -> None:
        subprocess.run(command, check=True, capture_output=True, preexec_fn=self._demote)

    def start(self) -> "PostgresServer":
        log = open(self.folder / "postgres.log", "ab")
        if self._as:
            os.chown(self.folder / "postgres.log", self._as.pw_uid, self._as.pw_gid)
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.folder / "data"), "-p", str(self.port), "-k", str(self.folder),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._demote)
        log.close()
        deadline = time.monotonic() + 30
        import psycopg
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("postgres exited: " + (self.folder / "postgres.log").read_text()[-2000:])
            try:
                psycopg.connect(self.url, connect_timeout=1).close()
                return self
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise AssertionError("postgres did not start accepting connections")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)   # fast shutdown
            self.process.wait(timeout=30)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

