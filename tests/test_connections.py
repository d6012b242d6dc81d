"""What one client, or a restart, can do to the connections (serving/connections.py and the drain
in serving/server.py), replayed as the attacks and clients do it against the real server path
(`server.serve` under waitress, tests.support.slow_app's slow fake models) on loopback: request
smuggling spellings, thousands of trickling connections, keep-alive clients through a SIGTERM
drain, and Frigate giving up on its calls."""
from __future__ import annotations

import collections
import http.client
import re
import resource
import signal
import socket
import threading
import time

import numpy as np
import pytest
import requests

from tests.support import imaging
from tests.support.frigate import FrigateDeepStack
from tests.support.http import multipart
from tests.support.slow_server import SlowServer, servers_made

pytestmark = pytest.mark.slow

HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
STATUS_LINE = re.compile(rb"(?:^|\n)HTTP/1\.[01] (\d{3}) ")


@pytest.fixture
def make_server(tmp_path):
    yield from servers_made(lambda **env: SlowServer(tmp_path, **env))


def exchange(port: int, data: bytes, wait: float = 5) -> tuple[bytes, bool]:
    """Send `data` in one write; everything the server answers, and whether it closed the
    connection (an end of stream within `wait` seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        received, deadline = b"", time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk
        return received, False


# The replay first, then other spellings of the same desync; each is followed, in the
# same write, by a request that must never be answered on that connection.
SMUGGLING = {
    "content-length then chunked": b"POST /v2/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
                                   b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n0\r\n\r\nG",
    "chunked then content-length": b"POST /v2/detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                   b"Content-Length: 6\r\n\r\n0\r\n\r\nG",
    "chunked twice": b"POST /v2/detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n"
                     b"Content-Length: 6\r\n\r\n0\r\n\r\nG",
    "HTTP/1.0 keep-alive with both": b"POST /v2/detect HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
                                     b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    "two content lengths": b"POST /v2/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nContent-Length: 0\r\n\r\n0\r\n\r\nG",
    "signed content length": b"POST /v2/detect HTTP/1.1\r\nHost: x\r\nContent-Length: +6\r\n\r\n0\r\n\r\nG",
    "identity coding": b"POST /v2/detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG",
    "bad chunk size": b"POST /v2/detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n0\r\n\r\n",
    "folded header": b"POST /v2/detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG",
}


def test_smuggled_requests_get_one_json_error_and_the_connection_closes(make_server):
    server = make_server(FAKE_DELAY_S=0.01)
    for spelling, attack in SMUGGLING.items():
        received, closed = exchange(server.port, attack + b"POST /health HTTP/1.1\r\nHost: x\r\n\r\n" + HEALTH)
        assert closed, spelling
        assert len(STATUS_LINE.findall(received)) == 1, (spelling, received)
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.split()[1] in (b"400", b"501"), (spelling, head)
        assert b"Connection: close" in head and b"application/json" in head and b"nosniff" in head, spelling
        assert b'"error"' in body, spelling
    # An honest keep-alive client still gets two answers on one connection.
    received, _ = exchange(server.port, HEALTH + HEALTH, wait=1)
    assert STATUS_LINE.findall(received) == [b"200", b"200"]


def trickling_connections(port: int, count: int) -> list[socket.socket]:
    """`count` connections that each announce a 100 kB upload and send only its head."""
    opened = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /v1/vision/detection HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        opened.append(s)
    return opened


def probe_seconds(url: str) -> float:
    started = time.perf_counter()
    assert requests.get(url, timeout=5).status_code == 200
    return time.perf_counter() - started


def test_two_thousand_slow_connections_do_not_take_the_probes(make_server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2500:
        pytest.skip(f"this test opens 2,000 connections; the hard open-file limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2500) if hard == resource.RLIM_INFINITY
                                                else min(max(soft, 2500), hard), hard))
    server = make_server(FAKE_DELAY_S=0.01, PRELOAD_MODELS="true", REQUEST_GRACE_S=3)
    slow = trickling_connections(server.port, 2000)
    try:
        probes = []
        deadline = time.monotonic() + 6  # past the grace: the slow ones are cut meanwhile
        while time.monotonic() < deadline:
            for s in slow[::50]:
                try:
                    s.send(b"x")  # a byte now and then: waitress' idle timer alone never fires
                except OSError:
                    pass
            probes += [probe_seconds(server.url + "/health"), probe_seconds(server.url + "/ready")]
            time.sleep(0.2)
        assert max(probes) < 1.0, sorted(probes)[-5:]
        answers = collections.Counter()
        for s in slow[:200]:
            s.settimeout(2)
            try:
                answers[s.recv(4096).split(b"\r\n", 1)[0]] += 1
            except OSError:
                answers["no answer"] += 1
        assert answers == {b"HTTP/1.1 408 Request Timeout": 200}, answers
    finally:
        for s in slow:
            s.close()
    assert server.classify(seed=1).status_code == 200


def keep_alive_client(port: int, index: int, outcomes: collections.Counter, failures: list) -> None:
    """Sends uploads one after another on a keep-alive connection, as an HTTP client library
    does: a new connection after `Connection: close`, a pause after a 503; done when the port no
    longer accepts connections (the service is gone, nothing was sent)."""
    connection, sent = None, 0
    while True:
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.connect()
            except ConnectionRefusedError:
                return
        content_type, body = multipart(files={"image": ("a.jpg", imaging.jpeg(size=(16, 16),
                                                                              color=(sent % 256, index, 7)))})
        sent += 1
        try:
            connection.request("POST", "/classify-image", body=body, headers={"Content-Type": content_type})
            response = connection.getresponse()
            response.read()
        except Exception as exc:  # reset, broken pipe, cut body, no answer: all failures here
            failures.append(repr(exc))
            return
        outcomes[response.status] += 1
        if response.will_close:
            connection.close()
            connection = None
        if response.status == 503:
            time.sleep(0.05)


def test_keep_alive_clients_lose_nothing_through_a_sigterm_drain(make_server):
    server = make_server(FAKE_DELAY_S=0.2, PRELOAD_MODELS="true", INFERENCE_CONCURRENCY=2, MAX_QUEUE=4,
                         DRAIN_GRACE_S=1, DRAIN_SECONDS=20)
    outcomes, failures = collections.Counter(), []
    clients = [threading.Thread(target=keep_alive_client, args=(server.port, i, outcomes, failures))
               for i in range(8)]
    for client in clients:
        client.start()
    time.sleep(1.5)
    server.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    ready = requests.get(server.url + "/ready", timeout=5)
    assert ready.status_code == 503 and ready.headers["Connection"] == "close"
    for client in clients:
        client.join(30)
    assert server.process.wait(timeout=20) == 0
    assert time.monotonic() - signalled >= 1.0  # the grace: /ready was 503 at least that long
    assert failures == []
    assert set(outcomes) <= {200, 503} and outcomes[200] > 0 and outcomes[503] > 0, outcomes
    log = server.log.read_text()
    assert "Canceling" not in log and "Traceback" not in log


def camera_frame(seed: int) -> np.ndarray:
    return np.full((1, 320, 320, 3), seed % 251, dtype=np.uint8)


def test_frigate_giving_up_leaves_no_work_behind(make_server):
    """Frigate's plugin gives up at `api_timeout` and sends the next frame at once. Ten calls
    abandoned at 10 ms must not be computed ahead of the next frames."""
    server = make_server(FAKE_DELAY_S=0.03, PRELOAD_MODELS="true", OBJECT_DETECTION_ENABLED="true",
                         CACHE_MAXSIZE=0)
    url = server.url + "/v1/vision/detection"
    FrigateDeepStack(url, api_timeout=5).detect_raw(camera_frame(0))  # warm: the first call sets up
    impatient = FrigateDeepStack(url, api_timeout=0.01)
    for seed in range(1, 11):
        impatient.detect_raw(camera_frame(seed))
    assert len(impatient.errors) == 10
    frigate = FrigateDeepStack(url, api_timeout=0.1)
    statuses = []
    original = frigate.session.post

    def post(*args, **kwargs):
        response = original(*args, **kwargs)
        statuses.append(response.status_code)
        return response
    frigate.session.post = post
    for seed in range(11, 21):
        frigate.detect_raw(camera_frame(seed))
    assert len(frigate.errors) <= 1, frigate.errors
    assert 503 not in statuses
    time.sleep(0.5)
    log = server.log.read_text()
    assert log.count('"status":499') >= 5  # the abandoned calls, dropped before their model call
