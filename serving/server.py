"""Serving under waitress with a drain: SIGTERM/SIGINT let in-flight requests finish.

waitress alone ends in-flight requests at once on SIGTERM. Here the signal only marks the
service as draining (readiness 503, new inference refused); a drain thread waits until no
request is running, queued or still being written, or DRAIN_SECONDS pass, then closes every
channel from inside waitress' own loop, which ends `run()` normally; the process exits 0.
"""
from __future__ import annotations

import logging
import signal
import threading
import time

import waitress

from serving import workers

log = logging.getLogger("image_service")


def serve(app, settings) -> int:
    worker = workers.this_worker()
    serving = threading.Event()  # from here on, SIGTERM and the supervisor's end drain
    if worker is None:
        where = {"host": "0.0.0.0", "port": settings.port}
    else:
        app.extensions["worker"] = worker
        where = {"sockets": [worker.listener()]}
        worker.watch_supervisor(lambda: on_signal(signal.SIGTERM, None) if serving.is_set()
                                else workers.exit_unserved("the supervisor is gone"))
        if settings.preload_models and not worker.accepts_while_loading:
            worker.wait_for_models(app.extensions["registry"])
    server = waitress.create_server(
        app,
        **where,
        threads=settings.server_threads,
        # Flask answers oversized bodies with a JSON 413; waitress' own cap is a backstop.
        max_request_body_size=settings.max_upload_bytes * 2 + 1024 * 1024,
        channel_timeout=settings.channel_timeout,
        cleanup_interval=max(1, min(10, settings.channel_timeout // 2)),
        connection_limit=settings.connection_limit,
        # Request bodies up to 4 MiB (a 12 MP JPEG) stay in memory instead of a temporary file.
        inbuf_overflow=4 * 1024 * 1024,
        # Read sockets 64 KiB at a time (waitress: 8 KiB): a 1.5 MB upload went through waitress
        # and the multipart parser in 2.8 ms instead of 4.9 (loopback, this 2-core machine).
        recv_bytes=64 * 1024,
        ident="image-classification-service",
    )
    admission, time_limit = app.extensions["admission"], app.extensions["time_limit"]

    def drain():
        deadline = time.monotonic() + settings.drain_seconds
        while time.monotonic() < deadline and not _idle(server):
            time.sleep(0.05)
        if not _idle(server):
            log.warning("drain time (%ss) is up with requests still running", settings.drain_seconds)
        server.trigger.pull_trigger(lambda: _close_all(server))

    def on_signal(signum, _frame):
        if admission.draining.is_set():
            return
        log.info("%s received: draining for up to %ss", signal.Signals(signum).name, settings.drain_seconds)
        admission.draining.set()
        threading.Thread(target=drain, name="drain", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serving.set()
    log.info("serving on port %d: %d inference workers, queue %d, %d server threads",
             settings.port, settings.waitress_threads, settings.max_queue, settings.server_threads)
    server.run()
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
    time_limit.shutdown()
    log.info("stopped")
    return 0


def _idle(server) -> bool:
    dispatcher = server.task_dispatcher
    if dispatcher.queue or dispatcher.active_count:
        return False
    for channel in list(server._map.values()):
        if getattr(channel, "requests", None) or getattr(channel, "total_outbufs_len", 0):
            return False
    return True


def _close_all(server) -> None:
    for channel in list(server._map.values()):
        channel.close()
