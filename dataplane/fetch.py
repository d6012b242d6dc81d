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
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
import time
import urllib.parse
from typing import Callable

import certifi
import urllib3

from errors import ImageTooLarge, ImageUrlUnavailable

log = logging.getLogger(__name__)

REDIRECTS = (301, 302, 303, 307, 308)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


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
                 opener: Opener = urllib3_opener, clock=time.monotonic):
        self.policy, self.resolver, self.opener, self.clock = policy, resolver, opener, clock

    def fetch(self, url: str) -> bytes:
        deadline = self.clock() + self.policy.timeout
        for _ in range(self.policy.max_redirects + 1):
            scheme, host, port, target = self._parse(url)
            address = self._checked_address(host, port)
            remaining = deadline - self.clock()
            if remaining <= 0:
                self._fail("deadline passed")
            try:
                response = self.opener(scheme, address, port, host, target, remaining)
            except Exception as exc:  # refused, reset, TLS, timeout: all alike to the client
                self._fail(type(exc).__name__)
            try:
                if response.status in REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        self._fail("redirect without Location")
                    url = urllib.parse.urljoin(url, location)
                    continue
                if response.status != 200:
                    raise ImageUrlUnavailable(f"The image URL answered HTTP {response.status}, not an image.")
                return self._read(response, deadline, url)
            finally:
                response.release_conn()
        self._fail("too many redirects")

    def _parse(self, url: str) -> tuple[str, str, int, str]:
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            self._fail("malformed URL")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImageUrlUnavailable("The image URL must be an http:// or https:// address.")
        if parts.username or parts.password:
            raise ImageUrlUnavailable("The image URL must not contain credentials.")
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
            self._fail("unresolvable")
        if not addresses:
            self._fail("no address")
        if not self._allowed(host, port):
            blocked = [a for a in addresses if not is_public_address(a)]
            if blocked:
                self._fail("non-public address")
        return addresses[0]

    def _read(self, response, deadline: float, url: str) -> bytes:
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.policy.max_bytes:
            raise ImageTooLarge(f"The image at the URL is larger than {self.policy.max_bytes // 2**20} MiB.")
        body = bytearray()
        while True:
            if self.clock() > deadline:
                self._fail("too slow")
            try:
                chunk = response.read1(64 * 1024)
            except Exception as exc:
                self._fail(type(exc).__name__)
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > self.policy.max_bytes:
                raise ImageTooLarge(f"The image at the URL is larger than {self.policy.max_bytes // 2**20} MiB.")

    @staticmethod
    def _fail(reason: str):
        # The reason is for operators only (never the URL: it may carry tokens); clients get
        # one answer for every failure.
        log.info("image URL refused or failed (%s)", reason)
        raise ImageUrlUnavailable()
