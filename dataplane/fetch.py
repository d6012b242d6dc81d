"""Fetching images from client-supplied URLs without becoming a proxy into our network.

Server-side request forgery defences (OWASP SSRF cheat sheet):
- http and https only; no credentials in the URL;
- the host is resolved once, *every* address is checked, and the connection is made to the
  checked address (a second lookup cannot swap in a private one); only public unicast
  addresses pass (no loopback, private, link-local, shared, reserved, multicast, unspecified,
  nor IPv4 hidden in IPv6 forms);
- redirects are followed by hand, at most 3, each hop checked again;
- one total deadline (10 s) and a size cap (10 MiB) however the remote trickles;
- proxies from the environment are never used (urllib3 reads none);
- blocked, unresolvable, refused and timed out look the same to the client.
`FETCH_ALLOW_HOSTS` (host or host:port) is the only way to reach a non-public host.

A URL that is refused or fails is counted by reason (`FailureLog`: a Prometheus counter and one
log line a minute at most), never logged one line each and never with the URL.
"""
from __future__ import annotations

import collections
import dataclasses
import ipaddress
import logging
import socket
import threading
import time
import urllib.parse
from typing import Callable

import certifi
import urllib3

from errors import ImageTooLarge, ImageUrlUnavailable

log = logging.getLogger(__name__)

REDIRECTS = (301, 302, 303, 307, 308)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

# Why a URL was not fetched, as counted and logged (a fixed set: a metric label each).
INVALID, BLOCKED, UNREACHABLE, TIMEOUT, REMOTE, TOO_LARGE = (
    "invalid", "blocked", "unreachable", "timeout", "remote_answer", "too_large")
LOG_EVERY = 60.0  # seconds between two lines about failed URLs


class _Refused(ImageUrlUnavailable):
    """The client's one answer for every failure, carrying the reason for operators."""

    def __init__(self, reason: str, message: str | None = None):
        super().__init__(message)
        self.reason = reason


class FailureLog:
    """Refused and failed image URLs, counted by reason (`on_failure`, e.g. a Prometheus
    counter) and said in one INFO line a minute at most with the counts since the line before:
    a line per URL let any client write 16 log lines a request. Never the URL (it may carry
    tokens)."""

    def __init__(self, on_failure: Callable[[str], None] | None = None, every: float = LOG_EVERY,
                 clock=time.monotonic):
        self.on_failure, self.every, self.clock = on_failure, every, clock
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._last = float("-inf")

    def note(self, reason: str) -> None:
        if self.on_failure is not None:
            self.on_failure(reason)
        with self._lock:
            self._counts[reason] += 1
            now = self.clock()
            if now - self._last < self.every:
                return
            counts, self._counts, self._last = self._counts, collections.Counter(), now
        log.info("image URLs refused or failed since the last such line: %d (%s)", sum(counts.values()),
                 ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items())))


@dataclasses.dataclass(frozen=True)
class FetchPolicy:
    allow_hosts: frozenset[str] = frozenset()
    timeout: float = 10.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 3


def is_public_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        if ip.ipv4_mapped:  # ::ffff:169.254.169.254 is the IPv4 address itself
            return is_public_address(ip.ipv4_mapped)
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not is_public_address(embedded):
            return False
    return bool(ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_private
                                       or ip.is_loopback or ip.is_link_local or ip.is_unspecified))


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


Opener = Callable[..., "urllib3.BaseHTTPResponse"]


def urllib3_opener(scheme: str, address: str, port: int, host: str, target: str,
                   timeout: float) -> "_PooledResponse":
    """GET `target` from `address` (already checked), presenting `host` for HTTP and TLS."""
    kwargs = dict(timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False, maxsize=1)
    if scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, port, server_hostname=host, assert_hostname=host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(), **kwargs)
    else:
        pool = urllib3.HTTPConnectionPool(address, port, **kwargs)
    default_port = 443 if scheme == "https" else 80
    host_header = f"[{host}]" if ":" in host else host
    if port != default_port:
        host_header += f":{port}"
    headers = {"Host": host_header, "User-Agent": "image-classification-service",
               "Accept": "image/*", "Accept-Encoding": "identity"}
    try:
        response = pool.urlopen("GET", target, headers=headers, redirect=False, retries=False,
                                preload_content=False, assert_same_host=False)
    except BaseException:
        pool.close()
        raise
    return _PooledResponse(response, pool)


class _PooledResponse:
    """A response that closes its one-off connection pool when released."""

    def __init__(self, response, pool):
        self._response, self._pool = response, pool
        self.status, self.headers = response.status, response.headers

    def read1(self, amount: int) -> bytes:
        return self._response.read1(amount)

    def release_conn(self) -> None:
        self._response.close()
        self._pool.close()


class Fetcher:
    def __init__(self, policy: FetchPolicy = FetchPolicy(), *,
                 resolver: Callable[[str, int], list[str]] = system_resolver,
                 opener: Opener = urllib3_opener, clock=time.monotonic, failures: FailureLog | None = None):
        self.policy, self.resolver, self.opener, self.clock = policy, resolver, opener, clock
        self.failures = failures or FailureLog()

    def fetch(self, url: str) -> bytes:
        """The image's bytes, or ImageUrlUnavailable / ImageTooLarge (counted, see FailureLog)."""
        try:
            return self._fetch(url)
        except _Refused as err:
            self.failures.note(err.reason)
            raise
        except ImageTooLarge:
            self.failures.note(TOO_LARGE)
            raise

    def _fetch(self, url: str) -> bytes:
        deadline = self.clock() + self.policy.timeout
        for _ in range(self.policy.max_redirects + 1):
            scheme, host, port, target = self._parse(url)
            address = self._checked_address(host, port)
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise _Refused(TIMEOUT)
            try:
                response = self.opener(scheme, address, port, host, target, remaining)
            except Exception:  # refused, reset, TLS, timeout: all alike to the client
                raise _Refused(UNREACHABLE) from None
            try:
                if response.status in REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise _Refused(REMOTE)
                    url = urllib.parse.urljoin(url, location)
                    continue
                if response.status != 200:
                    raise _Refused(REMOTE, f"The image URL answered HTTP {response.status}, not an image.")
                return self._read(response, deadline, url)
            finally:
                response.release_conn()
        raise _Refused(REMOTE)  # too many redirects

    def _parse(self, url: str) -> tuple[str, str, int, str]:
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            raise _Refused(INVALID) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _Refused(INVALID, "The image URL must be an http:// or https:// address.")
        if parts.username or parts.password:
            raise _Refused(INVALID, "The image URL must not contain credentials.")
        port = port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return parts.scheme, parts.hostname.lower(), port, target

    def _allowed(self, host: str, port: int) -> bool:
        allow = self.policy.allow_hosts
        return host in allow or f"{host}:{port}" in allow or f"[{host}]:{port}" in allow

    def _checked_address(self, host: str, port: int) -> str:
        try:
            addresses = self.resolver(host, port)
        except (OSError, UnicodeError):
            raise _Refused(UNREACHABLE) from None
        if not addresses:
            raise _Refused(UNREACHABLE)
        if not self._allowed(host, port):
            blocked = [a for a in addresses if not is_public_address(a)]
            if blocked:
                raise _Refused(BLOCKED)
        return addresses[0]

    def _read(self, response, deadline: float, url: str) -> bytes:
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.policy.max_bytes:
            raise ImageTooLarge(f"The image at the URL is larger than {self.policy.max_bytes // 2**20} MiB.")
        body = bytearray()
        while True:
            if self.clock() > deadline:
                raise _Refused(TIMEOUT)
            try:
                chunk = response.read1(64 * 1024)
            except Exception:
                raise _Refused(UNREACHABLE) from None
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > self.policy.max_bytes:
                raise ImageTooLarge(f"The image at the URL is larger than {self.policy.max_bytes // 2**20} MiB.")
