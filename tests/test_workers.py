"""WORKERS > 1 (serving/workers.py): the supervisor and its workers as real processes on one
loopback port, with the fake classifier of tests/support/slow_app.py (FAKE_DELAY_S per call,
FAKE_LOAD_S per load). Bounded runs."""
from __future__ import annotations

import collections
import concurrent.futures
import os
import re
import signal
import socket
import time

import psutil
import pytest
import requests

from tests.support.servers import wait_until
from tests.support.slow_server import SlowServer, servers_made

pytestmark = pytest.mark.slow


class Supervised(SlowServer):
    """`python -m tests.support.slow_app` with WORKERS set: the supervisor's process."""

    def __init__(self, tmp_path, **env):
        super().__init__(tmp_path, wait=False, **env)

    def workers(self) -> list[int]:
        return [child.pid for child in psutil.Process(self.process.pid).children()]

    def worker_answering(self) -> int:
        """Which worker a new connection reached (its /status)."""
        return requests.get(self.url + "/status", timeout=5).json()["worker"]["index"]

    def worker_pid(self, index: int) -> int:
        (pid,) = [child.pid for child in psutil.Process(self.process.pid).children()
                  if child.environ().get("IMAGE_SERVICE_WORKER", "").startswith(f"{index}/")]
        return pid

    def sample_status(self, until, seconds: float) -> list[tuple[str, int]]:
        """(the model's state, the answering worker) from /status on new connections, every
        0.1 s, until `until(status)` or `seconds` pass."""
        samples, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            status = requests.get(self.url + "/status", timeout=5).json()
            samples.append((status["models"]["slow"]["state"], status["worker"]["index"]))
            if until(status):
                break
            time.sleep(0.1)
        return samples

    def counted(self, route: str, status: int = 200) -> float:
        text = requests.get(self.url + "/metrics", timeout=5).text
        pattern = rf'^http_requests_total{{method="[A-Z]+",route="{re.escape(route)}",status="{status}"}} (\S+)$'
        return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M))

    def stop(self):
        super().stop()
        for pid in self._left_over():
            psutil.Process(pid).kill()

    def _left_over(self) -> list[int]:
        return [p.pid for p in psutil.process_iter(["environ"])
                if (p.info["environ"] or {}).get("IMAGE_SERVICE_SUPERVISOR") == str(self.process.pid)]


@pytest.fixture
def supervised(tmp_path):
    yield from servers_made(lambda **env: Supervised(tmp_path, **env))


def test_workers_share_the_port_and_metrics_count_every_worker(supervised):
    server = supervised(WORKERS=3, FAKE_DELAY_S=0.05, PRELOAD_MODELS="true")
    wait_until(lambda: requests.get(server.url + "/ready", timeout=1).status_code == 200, 30, "readiness")
    wait_until(lambda: len(server.workers()) == 3, 10, "three workers")

    def call(seed):  # a new connection per request: the kernel hands each to a worker
        return server.classify(seed).status_code, server.worker_answering()
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(call, range(90)))
    assert [status for status, _ in results] == [200] * 90
    answered_by = collections.Counter(index for _, index in results)
    assert set(answered_by) <= {0, 1, 2} and len(answered_by) >= 2, answered_by
    # Each scrape is answered by one worker and counts every worker's requests.
    assert [server.counted("/classify-image") for _ in range(6)] == [90.0] * 6
    # model_state counts the live workers in each state (each refreshes its own every second).
    wait_until(lambda: 'model_state{model="slow",state="ready"} 3.0' in requests.get(server.url + "/metrics").text,
               5, "three workers counted ready")
    log = server.log.read_text()
    assert "without REDIS_URL" in log
    assert f"INTRA_OP_THREADS for each worker: {max(1, len(os.sched_getaffinity(0)) // 3)}" in log


def test_a_worker_accepts_only_once_its_models_are_loaded(supervised):
    server = supervised(WORKERS=2, FAKE_LOAD_S=3, FAKE_DELAY_S=0.01, PRELOAD_MODELS="true")
    wait_until(lambda: requests.get(server.url + "/health", timeout=1).status_code == 200, 30, "liveness")
    samples = server.sample_status(until=lambda status: status["ready"], seconds=30)
    # Only the first worker's first start answers while its model loads (someone answers the
    # probes); no other worker took a connection before its model was loaded.
    assert any(state != "ready" for state, _ in samples)
    assert all(state == "ready" or index == 0 for state, index in samples), samples
    wait_until(lambda: len({server.worker_answering() for _ in range(20)}) == 2, 15, "both workers serving")


def test_a_restarted_first_worker_takes_no_connection_while_it_loads(supervised):
    server = supervised(WORKERS=2, FAKE_LOAD_S=3, FAKE_DELAY_S=0.01, PRELOAD_MODELS="true")
    wait_until(lambda: len({server.worker_answering() for _ in range(20)}) == 2, 30, "both workers serving")
    os.kill(server.worker_pid(0), signal.SIGKILL)
    samples = server.sample_status(until=lambda status: False, seconds=4)  # restart after 1 s, loads 3 s
    assert samples and all(state == "ready" and index == 1 for state, index in samples), samples
    wait_until(lambda: len({server.worker_answering() for _ in range(20)}) == 2, 15, "the first worker back")


def test_a_worker_still_loading_exits_when_the_supervisor_is_killed(supervised):
    server = supervised(WORKERS=2, FAKE_LOAD_S=30, PRELOAD_MODELS="true")
    wait_until(lambda: "loading the models before accepting" in server.log.read_text(), 30, "the second worker loading")
    workers = server.workers()
    server.process.kill()
    server.process.wait()
    wait_until(lambda: not any(psutil.pid_exists(pid) for pid in workers), 10, "the workers to exit")
    with socket.create_server(("0.0.0.0", server.port)):  # the port is free for the next start
        pass
    assert "the supervisor is gone before serving: exiting" in server.log.read_text()


def test_a_dead_worker_is_started_again_and_counts_survive(supervised):
    server = supervised(WORKERS=2, FAKE_DELAY_S=0.01, PRELOAD_MODELS="true")
    wait_until(lambda: len(server.workers()) == 2, 30, "two workers")
    wait_until(lambda: len({server.worker_answering() for _ in range(20)}) == 2, 30, "both workers serving")
    assert all(server.classify(seed).status_code == 200 for seed in range(20))
    before = server.counted("/classify-image")
    victim = server.workers()[0]
    os.kill(victim, signal.SIGKILL)
    # The other worker keeps answering meanwhile.
    assert all(server.classify(seed).status_code == 200 for seed in range(10))
    wait_until(lambda: len(server.workers()) == 2 and victim not in server.workers(), 15, "a new worker")
    assert server.counted("/classify-image") >= before + 10  # the dead worker's counts are kept
    log = server.log.read_text()
    assert f"(pid {victim}) exited with signal SIGKILL; starting it again" in log
    assert server.process.poll() is None


def test_sigterm_drains_every_worker_and_the_supervisor_exits_0(supervised):
    # Admission is per worker and connections are not spread evenly: room for all 6 in either.
    server = supervised(WORKERS=2, FAKE_DELAY_S=1.5, INFERENCE_CONCURRENCY=2, MAX_QUEUE=6, DRAIN_SECONDS=10,
                        PRELOAD_MODELS="true")
    wait_until(lambda: len({server.worker_answering() for _ in range(20)}) == 2, 30, "both workers serving")
    workers = server.workers()
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        in_flight = [pool.submit(server.classify, seed) for seed in range(6)]
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = server.classify(seed=100, timeout=5)
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "shutting_down"
        assert [f.result().status_code for f in in_flight] == [200] * 6
    assert server.process.wait(timeout=20) == 0
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in workers)
    log = server.log.read_text()
    assert "Traceback" not in log and log.count("draining (at least 0s for health checks to see it, at most 10s)") == 2


def test_workers_stop_by_themselves_when_the_supervisor_is_killed(supervised):
    server = supervised(WORKERS=2, PRELOAD_MODELS="true")
    wait_until(lambda: len(server.workers()) == 2, 30, "two workers")
    workers = server.workers()
    server.process.kill()
    server.process.wait()
    wait_until(lambda: not any(psutil.pid_exists(pid) for pid in workers), 15, "the workers to exit")
    assert "the supervisor (pid" in server.log.read_text()


def test_a_configuration_a_worker_rejects_stops_the_service(supervised, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model.json").write_text('{"task": "classification", "format": "tflite"}')
    server = supervised(command=("app.py",), WORKERS=2, IMAGE_CLASSIFICATION_MODEL="broken")
    assert server.process.wait(timeout=60) == 2
    log = server.log.read_text()
    assert "Invalid configuration" in log and "stopped on the configuration" in log
    assert "Traceback" not in log
