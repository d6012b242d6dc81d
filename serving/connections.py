"""What waitress leaves to us on a connection: framing that cannot be trusted, clients too slow
to finish a request, closing without losing an answer, and telling the application that a
client has gone.

- A request with both Content-Length and Transfer-Encoding is refused with a 400 and the
  connection is closed after it (RFC 9112 §6.1): behind a proxy that reads Content-Length
  instead, the rest of the body would be read here as the start of the next request
  (request smuggling). Every error waitress answers itself (bad framing, oversized heads or
  bodies, unknown transfer codings, a request too slow to arrive) closes the connection and
  answers in the API's JSON error shape.
- A request must arrive at a minimum average rate once its first byte is in: it gets
  `grace` seconds plus one second per `min_rate` bytes received, as Apache's mod_reqtimeout
  (`MinRate`) and nginx's client timeouts do. A client trickling one byte every few seconds
  resets waitress' idle timer forever; here it is answered 408 and closed.
- Closing after an answer (`Connection: close`, an error, the drain) is a lingering close:
  the answer is flushed, our side is shut for writing, and whatever the client still sends is
  read and dropped until it closes or `LINGER_SECONDS` pass. Closing a socket with unread
  data sends a reset, which can destroy the answer before the client has read it.
- A connection that lingered out is closed by its own `readable()`, never by the server's
  `maintenance`: that runs inside wasyncore's registration pass, whose list of descriptors was
  taken before it; a channel closed there would still be polled under its old descriptor
  (POLLNVAL), and a connection accepted in the same turn, given that descriptor number by the
  kernel, would be closed in its place, its request unread (a reset to the client).
- While the server drains, every answer carries `Connection: close`, so a keep-alive client
  learns that the connection ends with this answer instead of meeting a closed socket.
- The drain's end stops listening first, after accepting every connection already waiting
  (closing the listening socket would reset those). Then a connection closes when it is idle:
  nothing arriving or being answered, and a request answered on it or none begun within
  `FRESH_SECONDS` of its accept (a client that has just connected is sending its request:
  closing now would reset it unanswered). The rest are cut at the drain's deadline.
"""
from __future__ import annotations

import json
import socket
import threading
import time

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask

from api.errors import error_body
from api.middleware import API_POLICY, CACHE_CONTROL, SECURITY_HEADERS

LINGER_SECONDS = 2.0
FRESH_SECONDS = 1.0
ACCEPTS_PER_TURN = 64
# On every answer waitress writes itself: the application's own headers for an API answer.
ERROR_HEADERS = [("Content-Type", "application/json"), *SECURITY_HEADERS.items(),
                 ("Content-Security-Policy", API_POLICY), ("Cache-Control", CACHE_CONTROL)]
ERROR_TYPES = {400: ("bad_request", "The request is not valid HTTP/1.1 (framing or headers)."),
               408: ("request_timeout", "The request did not arrive in time; send it at a steady rate."),
               413: ("request_too_large", "The request body is larger than the server accepts."),
               431: ("headers_too_large", "The request's headers are too large."),
               501: ("not_implemented", "The request's Transfer-Encoding is not supported; use chunked or "
                                        "Content-Length.")}


def _raw_answer(code: int, reason: str) -> bytes:
    kind, message = ERROR_TYPES[code]
    body = json.dumps(error_body(code, kind, message)).encode()
    head = [f"HTTP/1.1 {code} {reason}", *(f"{name}: {value}" for name, value in ERROR_HEADERS),
            f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


TIMEOUT_ANSWER = _raw_answer(408, "Request Timeout")


class Parser(HTTPRequestParser):
    def parse_header(self, header_plus):
        super().parse_header(header_plus)
        # HTTP/1.1 has popped Transfer-Encoding when it took the body as chunked.
        if "CONTENT_LENGTH" in self.headers and (self.chunked or "TRANSFER_ENCODING" in self.headers):
            raise ParsingError("both Content-Length and Transfer-Encoding")


class JsonErrorTask(ErrorTask):
    """waitress' own error answers in the API's shape; the connection closes after each."""

    def execute(self):
        error = self.request.error
        kind, message = ERROR_TYPES.get(error.code, ("bad_request", ERROR_TYPES[400][1]))
        body = json.dumps(error_body(error.code, kind, message)).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend(ERROR_HEADERS + [("Content-Length", str(len(body)))])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class Task(WSGITask):
    def build_response_header(self):
        if self.channel.server.draining.is_set():
            self.set_close_on_finish()
        return super().build_response_header()


class Channel(HTTPChannel):
    parser_class = Parser
    task_class = Task
    error_task_class = JsonErrorTask
    partial_since: float | None = None   # when the request now arriving sent its first byte
    lingering_until: float | None = None
    answered_any = False                 # a request on this connection has been read whole

    # --- a request too slow to arrive ---------------------------------------------------------

    def received(self, data):
        partial = self.request
        result = super().received(data)
        if self.requests:
            self.answered_any = True
        if self.request is None:
            self.partial_since = None
        elif self.request is not partial or self.partial_since is None:
            self.partial_since = time.monotonic()
        return result

    def too_slow(self, now: float, grace: float, min_rate: float) -> bool:
        request = self.request
        if (request is None or self.partial_since is None or self.requests or self.will_close
                or self.close_when_flushed):
            return False
        arrived = request.header_bytes_received + request.body_bytes_received
        return now - self.partial_since > grace + arrived / min_rate

    def time_out(self) -> None:
        """Answer the request still arriving with a 408 and close, from the loop thread: a
        thousand slow clients cut at once must not queue a thousand tasks before the probes.
        (Called only while no earlier request on the connection is being answered.)"""
        request, self.request, self.partial_since = self.request, None, None
        request.close()
        with self.outbuf_lock:
            self.outbufs[-1].append(TIMEOUT_ANSWER)
            self.total_outbufs_len += len(TIMEOUT_ANSWER)
        self.close_when_flushed = True

    # --- a lingering close --------------------------------------------------------------------

    def readable(self):
        if self.lingered_out or (self.server.finishing and self.idle):
            self.handle_close()  # before this descriptor is polled: see the module's docstring
            return False
        return super().readable()

    def writable(self):
        return self.lingering_until is None and super().writable()

    def handle_write(self):
        # waitress' own, except that a close after the last answer lingers.
        if not self.requests:
            flush = self._flush_some
        elif self.total_outbufs_len >= self.adj.send_bytes:
            flush = self._flush_some_if_lockable
        else:
            flush = None
        self._flush_exception(flush)
        if self.close_when_flushed and not self.total_outbufs_len and not self.will_close:
            self.close_when_flushed = False
            self._linger()
        elif self.will_close:
            self.handle_close()

    def _linger(self) -> None:
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self.handle_close()
            return
        self.lingering_until = time.monotonic() + LINGER_SECONDS

    def handle_read(self):
        if self.lingering_until is None:
            return super().handle_read()
        try:
            self.recv(self.adj.recv_bytes)  # dropped; an end of stream closes (wasyncore)
        except OSError:
            self.handle_close()

    @property
    def lingered_out(self) -> bool:
        return self.lingering_until is not None and time.monotonic() >= self.lingering_until

    @property
    def quiet(self) -> bool:
        """Nothing received but unanswered, nothing being received, nothing left to send."""
        return (not self.requests and self.request is None and not self.total_outbufs_len
                and self.lingering_until is None)

    @property
    def idle(self) -> bool:
        """Quiet, and no request on its way: one was answered here (a keep-alive connection
        between requests) or none began in the first `FRESH_SECONDS`."""
        return self.quiet and (self.answered_any or time.time() - self.creation_time > FRESH_SECONDS)


class Server(TcpWSGIServer):
    channel_class = Channel
    finishing = False   # the listening socket is closed; idle connections close

    def __init__(self, application, adj: Adjustments, *, sock=None, draining: threading.Event,
                 request_grace: float, request_min_rate: float):
        self.draining = draining
        self.request_grace, self.request_min_rate = request_grace, request_min_rate
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(adj.threads)
        sockinfo = adj.listen[0] if sock is None else (sock.family, sock.type, sock.proto, sock.getsockname())
        super().__init__(application, map={}, _sock=sock, dispatcher=dispatcher, adj=adj,
                         bind_socket=sock is None, sockinfo=sockinfo)

    def handle_accept(self):
        # Accept what is waiting, not one connection per turn of the loop: each turn looks at
        # every open connection, so a thousand arriving at once would take a thousand turns
        # while a health check waited at the back of the listen queue.
        for _ in range(ACCEPTS_PER_TURN):
            before = len(self._map)
            super().handle_accept()
            if len(self._map) == before or len(self._map) >= self.adj.connection_limit:
                break

    def maintenance(self, now):
        super().maintenance(now)
        clock = time.monotonic()
        for channel in list(self.active_channels.values()):
            # A channel that lingered out closes in its own readable(), not here.
            if channel.too_slow(clock, self.request_grace, self.request_min_rate):
                channel.time_out()

    def quiet(self) -> bool:
        """No request queued, running, arriving or being answered, on any connection."""
        dispatcher = self.task_dispatcher
        if dispatcher.queue or dispatcher.active_count:
            return False
        return all(channel.quiet for channel in list(self.active_channels.values()))

    def stop_listening(self) -> None:
        """Accept every connection already waiting, close the listening socket, and close each
        connection once it is idle (from the loop thread, at the drain's end)."""
        for _ in range(max(0, self.adj.connection_limit - len(self._map))):   # a flood ends too
            before = len(self._map)
            super().handle_accept()
            if len(self._map) == before:
                break
        self.finishing = True
        wasyncore.dispatcher.close(self)  # the listening socket only: the trigger still wakes the loop

    @property
    def connections(self) -> int:
        return len(self.active_channels)

    def finish(self) -> int:
        """Close every connection and the trigger, which ends the loop (from the loop thread);
        how many were not quiet (cut)."""
        if not self.finishing:
            self.stop_listening()
        channels = list(self.active_channels.values())
        cut = sum(not channel.quiet for channel in channels)
        for channel in channels:
            channel.handle_close()
        self.trigger.close()
        return cut
