"""Image URLs and server-side request forgery: RELIABILITY.md, "Image URLs (SSRF)".

No test sends traffic outside the loopback range, even if the guard were broken: private,
link-local and metadata addresses are checked with the address checker alone or with a
stubbed resolver and a stubbed connection that fails the test if it is ever called.
"""
from __future__ import annotations

import logging
import socket
import time

import pytest

from dataplane.fetch import FailureLog, Fetcher, FetchPolicy, is_public_address
from errors import ImageUrlUnavailable
from tests.support.http import make_app
from tests.support.image_server import ImageServer


@pytest.fixture(scope="module")
def server():
    with ImageServer() as s:
        yield s


def make_client(tmp_path, allow: str = "", timeout: float = 10.0, fetcher=None):
    app = make_app(tmp_path, fetch_allow_hosts=frozenset(h for h in allow.lower().split(",") if h),
                   fetch_timeout=timeout, fetcher=fetcher)
    return app, app.test_client()


def classify_url(client, url, path="/classify-image"):
    return client.post(path, json={"image_url": url})


# --- the address checker alone ------------------------------------------------------------

@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.1.2.3", "0.0.0.0", "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.254",
    "192.168.1.1", "100.64.0.1", "100.127.255.254", "169.254.169.254", "169.254.0.1", "224.0.0.1",
    "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.0.1", "198.18.0.1", "192.0.2.1",
    "::1", "::", "fd00:ec2::254", "fc00::1", "fe80::1", "ff02::1", "::ffff:169.254.169.254",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:a00:1::", "64:ff9b::a9fe:a9fe", "2001:db8::1",
])
def test_non_public_addresses_are_refused(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111",
                                     "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert is_public_address(address)


# --- stubbed resolver and connection --------------------------------------------------------

class NeverConnect:
    def __init__(self):
        self.calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append(args)
        raise AssertionError("the guard let a non-public address through")


@pytest.mark.parametrize("addresses", [
    ["10.0.0.5"], ["169.254.169.254"], ["fd00:ec2::254"], ["::ffff:169.254.169.254"], ["100.64.0.1"],
    ["192.168.0.10"], ["172.20.1.1"], ["fe80::1"], ["ff02::1"],
    ["93.184.216.34", "10.0.0.5"],  # one public, one private: refused
])
def test_hostnames_resolving_to_non_public_addresses_never_connect(addresses):
    never = NeverConnect()
    fetcher = Fetcher(FetchPolicy(), resolver=lambda host, port: addresses, opener=never)
    with pytest.raises(ImageUrlUnavailable):
        fetcher.fetch("http://images.example.com/cat.jpg")
    assert never.calls == []


def test_connection_goes_to_the_checked_address_only():
    """DNS that changes between check and connect cannot redirect us: we resolve once and
    connect to exactly the address we checked."""
    answers = iter([["93.184.216.34"], ["10.0.0.5"]])
    seen = []

    class Response:
        status, headers = 200, {"Content-Length": "4"}
        def __init__(self): self.sent = False
        def read1(self, n):
            if self.sent:
                return b""
            self.sent = True
            return b"data"
        def release_conn(self): pass

    def opener(scheme, address, port, host, target, timeout):
        seen.append((address, host))
        return Response()

    fetcher = Fetcher(FetchPolicy(), resolver=lambda h, p: next(answers), opener=opener)
    assert fetcher.fetch("http://rebind.example.com/x.jpg") == b"data"
    assert seen == [("93.184.216.34", "rebind.example.com")]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1:70/_x", "ftp://example.com/a.jpg",
                                 "data:image/png;base64,iVBORw0KGgo=", "dict://127.0.0.1:11211/stat",
                                 "http://user:pass@example.com/a.jpg", "//example.com/a.jpg", "not a url"])
def test_other_schemes_and_credentials_open_no_socket(url):
    never = NeverConnect()
    resolved = []
    fetcher = Fetcher(FetchPolicy(), resolver=lambda h, p: resolved.append(h) or ["93.184.216.34"], opener=never)
    with pytest.raises(ImageUrlUnavailable):
        fetcher.fetch(url)
    assert never.calls == [] and resolved == []


def test_a_redirect_to_a_private_address_is_checked_again():
    class Redirect:
        status, headers = 302, {"Location": "http://metadata.internal/latest/meta-data/"}
        def release_conn(self): pass

    calls = []

    def opener(scheme, address, port, host, target, timeout):
        calls.append(address)
        if address != "93.184.216.34":
            raise AssertionError("followed a redirect into the private network")
        return Redirect()

    resolver = {"public.example.com": ["93.184.216.34"], "metadata.internal": ["169.254.169.254"]}
    fetcher = Fetcher(FetchPolicy(), resolver=lambda h, p: resolver[h], opener=opener)
    with pytest.raises(ImageUrlUnavailable):
        fetcher.fetch("http://public.example.com/a.jpg")
    assert calls == ["93.184.216.34"]


# --- over real sockets, loopback only --------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "2130706433", "0x7f.1", "127.1", "0", "[::1]",
                                  "0177.0.0.1"])
def test_loopback_in_any_spelling_is_refused(tmp_path, server, host):
    _, client = make_client(tmp_path)  # nothing allowed
    response = classify_url(client, f"http://{host}:{server.port}/cat.jpg")
    assert response.status_code == 400
    assert response.get_json()["error"]["type"] == "image_url_unavailable"
    assert server.hits.get("/cat.jpg") is None


def test_allowed_host_serves_the_image(tmp_path, server):
    _, client = make_client(tmp_path, allow=f"127.0.0.1:{server.port}")
    response = classify_url(client, server.url("/cat.jpg"))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[0][0] == "green"
    # The allow-list is by name: another spelling of the same address is still refused.
    assert classify_url(client, server.url("/cat.jpg", host="2130706433")).status_code == 400


def test_redirects_are_followed_up_to_three_and_each_hop_checked(tmp_path, server):
    _, client = make_client(tmp_path, allow=f"127.0.0.1:{server.port}")
    assert classify_url(client, server.url("/chain/2")).status_code == 200   # 3 redirects
    assert classify_url(client, server.url("/chain/3")).status_code == 400   # 4 redirects
    hop = server.url("/cat.jpg", host="localhost")                             # not allowed by name
    response = classify_url(client, server.url(f"/redirect?to={hop}"))
    assert response.status_code == 400


def test_remote_errors_are_400_and_never_echoed(tmp_path, server):
    _, client = make_client(tmp_path, allow=f"127.0.0.1:{server.port}")
    for path, kind in (("/missing", "image_url_unavailable"), ("/error", "image_url_unavailable"),
                       ("/page.html", "invalid_image")):
        response = classify_url(client, server.url(path))
        assert response.status_code == 400
        assert response.get_json()["error"]["type"] == kind
        assert "remote-secret-body" not in response.get_data(as_text=True)


def test_trickling_remote_gives_up_at_the_total_timeout(tmp_path, server):
    _, client = make_client(tmp_path, allow=f"127.0.0.1:{server.port}", timeout=2.0)
    started = time.monotonic()
    response = classify_url(client, server.url("/trickle"))
    elapsed = time.monotonic() - started
    assert response.status_code == 400
    assert elapsed < 4.0


def test_endless_or_huge_bodies_stop_at_the_size_cap(tmp_path, server):
    _, client = make_client(tmp_path, allow=f"127.0.0.1:{server.port}")
    for path in ("/endless", "/huge"):
        response = classify_url(client, server.url(path))
        assert response.status_code == 413
        assert response.get_json()["error"]["type"] == "image_too_large"


def test_blocked_unresolvable_and_refused_look_the_same(tmp_path, server):
    _, client = make_client(tmp_path, allow="127.0.0.1:1")
    blocked = classify_url(client, server.url("/cat.jpg")).get_json()   # loopback, not allowed
    refused = classify_url(client, "http://127.0.0.1:1/cat.jpg").get_json()  # allowed, nothing listens

    def unresolvable(host, port):
        raise socket.gaierror("no such host")
    _, client = make_client(tmp_path, fetcher=Fetcher(FetchPolicy(), resolver=unresolvable, opener=NeverConnect()))
    missing = classify_url(client, "http://no-such-host.invalid/cat.jpg").get_json()
    assert blocked == refused == missing


def test_proxies_from_the_environment_are_ignored(tmp_path, server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    _, client = make_client(tmp_path, allow=f"127.0.0.1:{server.port}")
    assert classify_url(client, server.url("/cat.jpg")).status_code == 200


# --- refused URLs in the log and the metrics ------------------------------------------------

def test_refused_urls_are_counted_never_logged_one_line_each_nor_shown(tmp_path, server, caplog):
    """The attack: URL after URL the service refuses, each with a token in it. Each used to be
    an INFO line: the client wrote the log."""
    caplog.set_level(logging.INFO, logger="dataplane.fetch")
    _, client = make_client(tmp_path, allow=f"127.0.0.1:{server.port}")
    for i in range(40):
        body = {"images": [{"image_url": f"http://127.0.0.1:9/{i}-{j}?token=s3cret"} for j in range(16)]}
        assert client.post("/v2/classify", json=body).status_code == 200
    assert classify_url(client, server.url("/missing")).status_code == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "dataplane.fetch"]
    assert lines == ["image URLs refused or failed since the last such line: 1 (blocked 1)"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'image_url_failures_total{reason="blocked"} 640.0' in metrics
    assert 'image_url_failures_total{reason="remote_answer"} 1.0' in metrics
    assert "s3cret" not in metrics + client.get("/report").get_data(as_text=True)


def test_the_failure_line_says_the_count_since_the_line_before(caplog):
    caplog.set_level(logging.INFO, logger="dataplane.fetch")
    now = [0.0]
    counted = []
    failures = FailureLog(on_failure=counted.append, clock=lambda: now[0])
    for reason in ["blocked"] * 5 + ["timeout", "unreachable"]:
        failures.note(reason)
        now[0] += 5
    now[0] = 61
    failures.note("blocked")
    assert [r.getMessage() for r in caplog.records] == [
        "image URLs refused or failed since the last such line: 1 (blocked 1)",
        "image URLs refused or failed since the last such line: 7 (blocked 5, timeout 1, unreachable 1)"]
    assert len(counted) == 8
