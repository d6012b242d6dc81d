"""serving.connections' server driven one turn of wasyncore's loop at a time, in this process:
what happens between the turns is what the real server's loop thread does, in a fixed order."""
from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

import pytest
from waitress import wasyncore
from waitress.adjustments import Adjustments

from serving.connections import Server


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def turns(server: Server, until, limit: float = 5) -> None:
    deadline = time.monotonic() + limit
    while not until():
        assert time.monotonic() < deadline, "the loop did not get there"
        wasyncore.poll2(0.05, server._map)


def test_a_connection_accepted_as_a_lingering_one_closes_is_answered_not_reset():
    """The lingering close ends in the same turn of the loop as a new connection is accepted:
    the kernel gives the new one the descriptor number just freed, and it must be answered."""
    server = Server(hello, Adjustments(host="127.0.0.1", port=0, threads=1, cleanup_interval=1,
                                       asyncore_use_poll=True),
                    draining=threading.Event(), request_grace=10, request_min_rate=1000)
    port = server.socket.getsockname()[1]
    with contextlib.ExitStack() as sockets:
        first = sockets.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        try:
            first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            turns(server, lambda: any(c.lingering_until is not None for c in server.active_channels.values()))
            assert first.recv(4096).startswith(b"HTTP/1.1 200")
            (lingering,) = server.active_channels.values()
            old_descriptor = lingering._fileno

            lingering.lingering_until = time.monotonic() - 1   # lingered out
            server.next_channel_cleanup = 0                     # maintenance in the next turn
            second = sockets.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            second.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # waiting in the listen queue
            time.sleep(0.1)
            wasyncore.poll2(0.05, server._map)                  # closes one, accepts the other
            turns(server, lambda: select.select([second], [], [], 0)[0])

            assert second.recv(4096).startswith(b"HTTP/1.1 200")  # before: ConnectionResetError
            assert lingering.socket is None
            assert [c._fileno for c in server.active_channels.values()] == [old_descriptor]
        finally:
            server.close()
            for channel in list(server.active_channels.values()):
                channel.handle_close()
            server.task_dispatcher.shutdown(timeout=1)


def test_the_drains_end_answers_a_request_waiting_to_be_accepted_and_closes_idle_connections():
    server = Server(hello, Adjustments(host="127.0.0.1", port=0, threads=1, asyncore_use_poll=True),
                    draining=threading.Event(), request_grace=10, request_min_rate=1000)
    port = server.socket.getsockname()[1]
    with contextlib.ExitStack() as sockets:
        try:
            kept_alive = sockets.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            kept_alive.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            turns(server, lambda: select.select([kept_alive], [], [], 0)[0])
            assert kept_alive.recv(4096).startswith(b"HTTP/1.1 200")
            late = sockets.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            late.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # in the listen queue, unread
            time.sleep(0.1)

            server.stop_listening()
            assert server.connections == 2
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            turns(server, lambda: select.select([late], [], [], 0)[0])
            assert late.recv(4096).startswith(b"HTTP/1.1 200")   # before: ConnectionResetError
            turns(server, lambda: server.connections == 0)       # the idle one closed, the other after its answer
            assert kept_alive.recv(4096) == b""
            assert server.finish() == 0
        finally:
            for channel in list(server.active_channels.values()):
                channel.handle_close()
            server.task_dispatcher.shutdown(timeout=1)
