"""Serving under waitress with a drain that loses nothing, and connections that one client cannot
exhaust.

waitress alone ends in-flight requests at once on SIGTERM. Here the signal starts a drain:
- `/ready` answers 503 at once and new inference is refused with 503 `shutting_down`; every
  answer from then on carries `Connection: close` (serving.connections), so a keep-alive client
  is told, with an answer, that its connection ends;
- the drain lasts at least DRAIN_GRACE_S, so a load balancer's or orchestrator's health check
  sees `/ready` turn 503 and stops routing before the port closes;
- it ends once nothing is queued, running, arriving or being written on any connection (or when
  DRAIN_SECONDS are up): then the listening socket closes and the connections left, all idle,
  close from inside waitress' own loop, which ends `run()` normally; the process exits 0.

Connections (serving.connections): the loop polls (no 1,024-descriptor ceiling of select), the
process may open as many descriptors as CONNECTION_LIMIT needs, and a request must arrive at
REQUEST_MIN_RATE bytes a second after REQUEST_GRACE_S, so slow clients cannot hold every place
while health checks wait behind them.
"""
from __future__ import annotations

import logging
import resource
import signal
import threading
import time

from waitress.adjustments import Adjustments

from serving import workers
from serving.connections import Server

log = logging.getLogger("image_service")

# Descriptors the process needs besides its connections: model files, Redis, logs, threads.
SPARE_DESCRIPTORS = 256


def serve(app, settings) -> int:
    worker = workers.this_worker()
    serving = threading.Event()  # from here on, SIGTERM and the supervisor's end drain
    admission, time_limit = app.extensions["admission"], app.extensions["time_limit"]
    if worker is not None:
        app.extensions["worker"] = worker
        worker.watch_supervisor(lambda: drain.start(signal.SIGTERM) if serving.is_set()
                                else workers.exit_unserved("the supervisor is gone"))
        if settings.preload_models and not worker.accepts_while_loading:
            worker.wait_for_models(app.extensions["registry"])
    server = build_server(app, settings, admission.draining,
                          sock=worker.listener() if worker is not None else None)
    drain = Drain(server, admission.draining, settings.drain_seconds, settings.drain_grace)
    signal.signal(signal.SIGTERM, lambda signum, _frame: drain.start(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: drain.start(signum))
    serving.set()
    log.info("serving on port %d: %d inference workers, queue %d, %d server threads, up to %d connections",
             settings.port, settings.inference_concurrency, settings.max_queue, settings.server_threads,
             server.adj.connection_limit)
    server.run()
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
    time_limit.shutdown()
    log.info("stopped")
    return 0


def build_server(app, settings, draining: threading.Event, sock=None) -> Server:
    adjustments = Adjustments(
        **({"host": "0.0.0.0", "port": settings.port} if sock is None else {}),
        threads=settings.server_threads,
        # Flask answers oversized bodies with a JSON 413; waitress' own cap is a backstop.
        max_request_body_size=settings.max_upload_bytes * 2 + 1024 * 1024,
        channel_timeout=settings.channel_timeout,
        # Also how often slow requests and lingering closes are looked at.
        cleanup_interval=1,
        connection_limit=open_descriptors(settings.connection_limit),
        asyncore_use_poll=True,
        # Read a connection while its request runs, so a client that leaves is noticed
        # (`waitress.client_disconnected`) and its work dropped.
        channel_request_lookahead=1,
        # Request bodies up to 4 MiB (a 12 MP JPEG) stay in memory instead of a temporary file.
        inbuf_overflow=4 * 1024 * 1024,
        # Sockets read 64 KiB at a time (waitress: 8 KiB): uploads go through in fewer passes.
        recv_bytes=64 * 1024,
        ident="image-classification-service",
    )
    return Server(app, adjustments, sock=sock, draining=draining,
                  request_grace=settings.request_grace, request_min_rate=settings.request_min_rate)


def open_descriptors(connection_limit: int) -> int:
    """Raise the process' descriptor limit to what `connection_limit` connections need (up to the
    hard limit); the connection limit the process can keep."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connection_limit + SPARE_DESCRIPTORS
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    if soft != resource.RLIM_INFINITY and soft - SPARE_DESCRIPTORS < connection_limit:
        kept = max(10, soft - SPARE_DESCRIPTORS)
        log.warning("CONNECTION_LIMIT=%d needs more open files than this process may have (%d): "
                    "serving at most %d connections; raise the limit (ulimit -n, Docker --ulimit nofile)",
                    connection_limit, soft, kept)
        return kept
    return connection_limit


class Drain:
    def __init__(self, server: Server, draining: threading.Event, seconds: float, grace: float):
        self.server, self.draining, self.seconds, self.grace = server, draining, seconds, grace
        self._lock = threading.Lock()

    def start(self, signum) -> None:
        with self._lock:
            if self.draining.is_set():
                return
            self.draining.set()
        log.info("%s received: draining (at least %ss for health checks to see it, at most %ss)",
                 signal.Signals(signum).name, self.grace, self.seconds)
        threading.Thread(target=self._run, name="drain", daemon=True).start()

    def _run(self) -> None:
        started = time.monotonic()
        deadline = started + self.seconds
        while time.monotonic() < deadline and not (time.monotonic() - started >= self.grace
                                                   and self.server.quiet()):
            time.sleep(0.05)
        # Stop listening; the connections close as they become idle, the rest at the deadline.
        if time.monotonic() < deadline and self._in_loop(self.server.stop_listening):
            while time.monotonic() < deadline and self.server.connections:
                self._in_loop(lambda: None)  # a turn of the loop: idle connections close in it
                time.sleep(0.05)
        self._in_loop(self._finish)

    def _in_loop(self, thunk) -> bool:
        """Run `thunk` in the server's loop thread; False where the loop has already ended."""
        try:
            self.server.trigger.pull_trigger(thunk)
            return True
        except OSError:
            # The loop thread, woken by something else between the trigger's queueing of
            # _finish and its wake-up write, already ran _finish, which closes the trigger.
            return False

    def _finish(self) -> None:
        cut = self.server.finish()
        if cut:
            log.warning("drain time (%ss) is up: %d connection(s) still busy were closed", self.seconds, cut)
