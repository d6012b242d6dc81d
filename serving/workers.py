"""WORKERS > 1: several serving processes on one port, under a small supervisor.

Why: one process runs every request's Python work (waitress' I/O loop, multipart parsing, JPEG
decoding, the JSON answer) under one interpreter lock. On a GPU host that lock, not the GPU,
limits throughput (docs/performance.md, "On a GPU"). With WORKERS=N, `python app.py` becomes
a supervisor that
- binds the port once and hands the listening socket to N workers, each the same program in
  worker mode: a whole service (its own models, admission, cache, drain) accepting connections
  from that one socket; the kernel gives each new connection to a worker that accepts it;
- lets a worker accept only once its models were tried (PRELOAD_MODELS), so connections go to
  workers that can serve them; only the first worker's first start answers /health and /ready
  while loading, as a single process does (someone must answer the probes);
- passes SIGTERM/SIGINT on (every worker drains) and exits 0 when they have; a second signal
  kills the workers at once;
- starts a worker that died again (after 1 s, doubling up to 30 s while it keeps dying young);
  a worker that exits with the configuration error's code stops the service with that code;
- gives the workers one Prometheus multiprocess directory, so /metrics counts every worker's
  requests, whichever worker answers the scrape, and (INTRA_OP_THREADS unset) each worker its
  share of the CPUs for the frameworks' thread pools.
A worker whose supervisor is gone (killed with SIGKILL) drains and exits by itself.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

log = logging.getLogger("image_service")

# Set by the supervisor for its workers only (not settings an operator gives).
LISTEN_FD = "IMAGE_SERVICE_LISTEN_FD"
WORKER = "IMAGE_SERVICE_WORKER"            # "index/count"
SUPERVISOR = "IMAGE_SERVICE_SUPERVISOR"    # the supervisor's pid
FIRST = "IMAGE_SERVICE_FIRST_WORKER"       # the first worker's first start: answers while loading
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"   # read by prometheus_client when it is imported

EXIT_CONFIG = 2          # app.main's exit code for an invalid configuration
RESTART_DELAY = 1.0      # seconds before a dead worker starts again; doubles while it dies young
RESTART_DELAY_MAX = 30.0
YOUNG = 10.0             # a worker that dies sooner than this after its start "died young"
BACKLOG = 1024           # waitress' own default
MODELS_WAIT = 600.0      # a worker waits this long at most for its models before it accepts


@dataclasses.dataclass(frozen=True)
class Worker:
    """This process' place under a supervisor."""
    index: int
    count: int
    supervisor_pid: int
    accepts_while_loading: bool = False

    @property
    def label(self) -> str:
        return f"worker {self.index + 1}/{self.count}"

    def wait_for_models(self, registry, limit: float = MODELS_WAIT) -> None:
        """Accept no connection until this worker's models were tried (loaded, or failed: then
        it answers 503 as one process does), for at most `limit` seconds. A signal meanwhile
        ends the process at once: it serves nothing yet."""
        handlers = {number: signal.signal(number, lambda signum, _frame: exit_unserved(
            f"{signal.Signals(signum).name} received")) for number in (signal.SIGTERM, signal.SIGINT)}
        log.info("loading the models before accepting connections")
        if not registry.wait_until_tried(limit):
            log.warning("models still loading after %.0f s; accepting connections (/ready says so)", limit)
        for number, handler in handlers.items():
            signal.signal(number, handler)

    def listener(self) -> socket.socket:
        """The supervisor's listening socket (call once)."""
        return socket.socket(fileno=int(os.environ[LISTEN_FD]))

    def watch_supervisor(self, on_gone, interval: float = 1.0) -> threading.Thread:
        """Call `on_gone()` once if the supervisor dies (this process is then re-parented)."""
        def watch():
            while os.getppid() == self.supervisor_pid:
                time.sleep(interval)
            log.warning("the supervisor (pid %d) is gone; stopping", self.supervisor_pid)
            on_gone()
        thread = threading.Thread(target=watch, name="supervisor-watch", daemon=True)
        thread.start()
        return thread


def this_worker() -> Worker | None:
    """This process' place when a supervisor started it; None for a service of one process."""
    if LISTEN_FD not in os.environ:
        return None
    index, count = (int(part) for part in os.environ[WORKER].split("/"))
    return Worker(index, count, int(os.environ[SUPERVISOR]), accepts_while_loading=FIRST in os.environ)


def exit_unserved(why: str) -> None:
    """End a worker that serves nothing yet (its models are loading): at once, code 0."""
    log.info("%s before serving: exiting", why)
    os._exit(0)


def metrics_dir() -> str | None:
    """The Prometheus directory every worker writes to; None for a single process."""
    return os.environ.get(METRICS_DIR) if this_worker() else None


def should_supervise(settings) -> bool:
    return settings.workers > 1 and this_worker() is None


class _Slot:
    def __init__(self, index: int):
        self.index = index
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.started = 0.0
        self.delay = RESTART_DELAY
        self.start_at = 0.0

    def start(self, command: list[str], env: dict[str, str], count: int, fd: int) -> None:
        env = dict(env, **{WORKER: f"{self.index}/{count}"})
        if self.index == 0 and self.starts == 0:  # someone must answer probes while all load
            env[FIRST] = "1"
        self.process = subprocess.Popen(command, env=env, pass_fds=(fd,))
        self.starts += 1
        self.started = time.monotonic()

    def died(self, now: float) -> float:
        """Schedule the restart; the delay before it (doubled each time it dies young)."""
        if now - self.started >= YOUNG:
            self.delay = RESTART_DELAY
        delay, self.delay = self.delay, min(self.delay * 2, RESTART_DELAY_MAX)
        self.start_at = now + delay
        self.process = None
        return delay


def supervise(settings, command: list[str]) -> int:
    """Run `command` as `settings.workers` workers on `settings.port` until SIGTERM/SIGINT; the
    exit code (0, or EXIT_CONFIG when a worker found the configuration invalid)."""
    return Supervisor(settings, command).run()


class Supervisor:
    def __init__(self, settings, command: list[str]):
        self.settings, self.command = settings, command
        self.slots = [_Slot(index) for index in range(settings.workers)]
        self.stopping = threading.Event()
        self.code = 0

    def run(self) -> int:
        listener = socket.create_server(("0.0.0.0", self.settings.port), backlog=BACKLOG)
        listener.set_inheritable(True)
        self.metrics_dir = tempfile.mkdtemp(prefix="image-service-metrics-")
        self.env = {**os.environ, LISTEN_FD: str(listener.fileno()), SUPERVISOR: str(os.getpid()),
                    METRICS_DIR: self.metrics_dir}
        self.fd = listener.fileno()
        if not self.settings.intra_op_threads:  # "the CPUs": each worker gets its share of them
            share = max(1, len(os.sched_getaffinity(0)) // len(self.slots))
            self.env["INTRA_OP_THREADS"] = str(share)
            log.info("INTRA_OP_THREADS for each worker: %d (the CPUs divided among the workers)", share)
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        log.info("supervisor: %d workers on port %d", len(self.slots), self.settings.port)
        if not self.settings.redis_url:
            log.warning("WORKERS=%d without REDIS_URL: each worker keeps its own result cache and usage "
                        "report (/report shows the worker that answers it); set REDIS_URL to share them",
                        len(self.slots))
        try:
            while not self.stopping.is_set():
                self.tend(time.monotonic())
                time.sleep(0.1)
            for process in self.running():  # again: one may have started as the signal came
                process.send_signal(signal.SIGTERM)
            _wait(self.running(), self.settings.drain_seconds + 10)
        finally:
            for process in self.running():
                process.kill()
                process.wait()
            listener.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        log.info("supervisor stopped")
        return self.code

    def running(self) -> list[subprocess.Popen]:
        return [slot.process for slot in self.slots if slot.process is not None and slot.process.poll() is None]

    def on_signal(self, signum, _frame=None) -> None:
        name = signal.Signals(signum).name
        if self.stopping.is_set():  # a second signal: no more waiting for the drain
            log.warning("%s received again: stopping the workers at once", name)
            for process in self.running():
                process.kill()
            return
        self.stop(f"{name} received")

    def stop(self, why: str) -> None:
        if self.stopping.is_set():
            return
        log.info("%s: stopping %d workers (each drains for up to %ss)", why, len(self.slots),
                 self.settings.drain_seconds)
        self.stopping.set()
        for process in self.running():
            process.send_signal(signal.SIGTERM)

    def tend(self, now: float) -> None:
        """Start the workers that are due; notice the ones that exited."""
        from prometheus_client import multiprocess

        for slot in self.slots:
            if slot.process is None:
                if now >= slot.start_at and not self.stopping.is_set():
                    slot.start(self.command, self.env, len(self.slots), self.fd)
                continue
            status = slot.process.poll()
            if status is None:
                continue
            pid = slot.process.pid
            multiprocess.mark_process_dead(pid, self.metrics_dir)  # its live gauges go; its counts stay
            if status == EXIT_CONFIG:
                self.code = EXIT_CONFIG
                self.stop(f"worker {slot.index + 1}/{len(self.slots)} stopped on the configuration")
                return
            delay = slot.died(now)
            log.warning("worker %d/%d (pid %d) exited with %s; starting it again in %.0f s",
                        slot.index + 1, len(self.slots), pid, _describe(status), delay)


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"code {status}"


def _wait(processes: list[subprocess.Popen], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("a worker (pid %d) did not stop in time; killing it", process.pid)
            process.kill()
            process.wait()
