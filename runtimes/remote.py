"""What every remote inference engine shares (Triton, TF Serving, KServe, OpenVINO Model Server,
MLServer): the pooled HTTP client, the engine's health as /ready sees it, and the checks on
every answer.

The service keeps everything around the tensor (decoding, resizing, labels, postprocessing,
cache, micro-batching); the engine runs the network. A problem with the engine is an
`EngineProblem`: its `reason` is for operators (logs, /ready: the engine's host, the HTTP
status, what was wrong; never the engine's own body) and clients get 503 `model_not_ready`
(unreachable or not ready), 504 (too slow) or 502 `upstream_error` (an error, or an answer
with a wrong shape, NaN or a missing output).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import socket
import threading
import time
import urllib.parse

import numpy as np
import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter

from contract import ModelUnavailable
from errors import ApiError, InferenceTimeout, ModelNotReady, UpstreamError
from runtimes.base import Executor, TensorInfo

log = logging.getLogger(__name__)

READY, NOT_READY, UNREACHABLE, TIMEOUT, FAILED = "ready", "not_ready", "unreachable", "timeout", "failed"
RETRY_SECONDS = 5        # an engine that is down is asked again after this long (Retry-After)
HEALTH_SECONDS = 2.0     # /ready's view of the engine is at most this old, plus one probe
CONNECT_SECONDS = 3.05   # connecting is quick or the engine is not there
GRPC_SCHEMES = ("grpc", "grpcs")   # the Open Inference Protocol over gRPC (runtimes/open_inference_grpc.py)
POOL_SIZE = 32           # kept-alive connections per engine: more than the workers that call it


@dataclasses.dataclass(frozen=True)
class RemoteTarget:
    """A model on an engine, as model.json names it. Header values come from the environment
    (`headers_env`) and are never printed: repr leaves them out."""
    url: str                               # base URL, http(s)://host[:port][/prefix], no trailing slash
    model: str
    version: str | None = None
    timeout_s: float = 10.0
    headers_env: tuple[tuple[str, str], ...] = ()   # (header, environment variable)
    encoding: str = "auto"                 # V2 tensors: auto (binary where the engine says so), json, binary
    signature_name: str | None = None      # TF Serving
    headers: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)
    # FETCH_ALLOW_HOSTS: hosts the address policy (refused_engine_address) lets through anyway.
    allow_hosts: frozenset[str] = dataclasses.field(default=frozenset(), repr=False, compare=False)

    @property
    def transport(self) -> str:
        """grpc for grpc:// and grpcs:// URLs, else http."""
        return "grpc" if urllib.parse.urlsplit(self.url).scheme in GRPC_SCHEMES else "http"

    @property
    def host(self) -> str:
        """host[:port] of the URL: all that /ready and the logs say about where the engine is."""
        return urllib.parse.urlsplit(self.url).netloc

    @property
    def allowed(self) -> bool:
        """Whether FETCH_ALLOW_HOSTS names this engine's host (alone, or with its port)."""
        parts = urllib.parse.urlsplit(self.url)
        return host_allowed(parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme], self.allow_hosts)


# --- where an engine may be: the address policy ---------------------------------------------------

# An engine never lives at a link-local address (169.254.0.0/16, fe80::/10), and that is where
# cloud metadata services answer with the machine's credentials (169.254.169.254 on AWS, GCP,
# Azure, OpenStack; 169.254.170.2 for ECS tasks); nor at the metadata addresses outside it (AWS
# over IPv6, Alibaba Cloud, Oracle Cloud). Private addresses stay allowed: engines usually live
# there. IPv4 is also recognised inside IPv6 (mapped, 6to4, Teredo, NAT64).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"))
DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 0, "grpcs": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
REFUSED_ADDRESS = ("resolves to a link-local or cloud metadata address, where no inference engine lives; "
                   "name the host in FETCH_ALLOW_HOSTS to allow it")


def refused_engine_address(address: str) -> bool:
    """Whether the service refuses to connect to `address` (an IP address string) for an engine."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and refused_engine_address(str(embedded)):
            return True
        ip = ipaddress.ip_address(address.split("%", 1)[0])   # the scope (fe80::1%eth0) aside
    return ip.is_link_local or ip in METADATA_ADDRESSES


def literal_address(host: str) -> str | None:
    """The IP address a URL's host spells literally, also in the forms inet_aton reads
    (2852039166, 0xa9.0xfe.0xa9.0xfe, 169.254.43518); None for a name."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    return None


def host_allowed(host: str, port: int, allow_hosts: frozenset[str]) -> bool:
    host = host.lower()
    return host in allow_hosts or f"{host}:{port}" in allow_hosts or f"[{host}]:{port}" in allow_hosts


class EngineAddressRefused(OSError):
    """The engine's host resolves to an address the policy refuses."""


def checked_addresses(host: str, port: int, allow_hosts: frozenset[str]) -> list[str]:
    """Every address `host` resolves to, once each passed the policy (socket.gaierror when it
    resolves to none); EngineAddressRefused when one did not and the host is not allowed."""
    addresses = list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))
    if not host_allowed(host, port, allow_hosts) and any(refused_engine_address(a) for a in addresses):
        raise EngineAddressRefused(REFUSED_ADDRESS)
    return addresses


class _CheckedConnection:
    """Mixed into urllib3's connections: the host is resolved here, every address checked, and
    the socket opened to a checked address (a second lookup cannot swap in another one). The
    host name itself still goes to TLS and the Host header."""
    allow_hosts: frozenset[str] = frozenset()

    def _new_conn(self):
        name, failure = self._dns_host, None
        try:
            for address in checked_addresses(name, self.port, self.allow_hosts):
                self._dns_host = address
                try:
                    return super()._new_conn()
                except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError) as exc:
                    failure = exc   # the next address, as socket.create_connection would try
        finally:
            self._dns_host = name
        raise failure


def _checked_pools(allow_hosts: frozenset[str]) -> dict:
    """urllib3's connection pools for http and https with _CheckedConnection."""
    pools = {}
    for scheme, pool in (("http", urllib3.HTTPConnectionPool), ("https", urllib3.HTTPSConnectionPool)):
        connection = type("Checked" + pool.ConnectionCls.__name__, (_CheckedConnection, pool.ConnectionCls),
                          {"allow_hosts": allow_hosts})
        pools[scheme] = type("Checked" + pool.__name__, (pool,), {"ConnectionCls": connection})
    return pools


class _CheckedAdapter(HTTPAdapter):
    """requests' adapter whose connections go through the address policy."""

    def __init__(self, allow_hosts: frozenset[str], **kwargs):
        self.allow_hosts = allow_hosts
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _checked_pools(self.allow_hosts)


def refusal_in(exc: BaseException | None) -> EngineAddressRefused | None:
    """The EngineAddressRefused somewhere in the exception chain requests and urllib3 wrap it in."""
    seen, todo = set(), [exc]
    while todo:
        current = todo.pop()
        if isinstance(current, EngineAddressRefused):
            return current
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None),
                 *(a for a in current.args if isinstance(a, BaseException))]
    return None


class EngineProblem(ModelUnavailable):
    """The engine could not be used. `reason` is our own text, never the engine's body."""

    def __init__(self, state: str, reason: str):
        super().__init__(reason)
        self.state = state

    def api_error(self) -> ApiError:
        if self.state in (UNREACHABLE, NOT_READY):
            return ModelNotReady("The model's inference engine is unreachable or not ready; try again shortly.",
                                 headers={"Retry-After": str(RETRY_SECONDS)})
        if self.state == TIMEOUT:
            return InferenceTimeout("The model's inference engine did not answer within the time limit.")
        return UpstreamError()


class Engine:
    """One pooled HTTP client per remote model: connections are kept alive and reused, no
    request is retried behind the caller's back, redirects are not followed."""

    def __init__(self, target: RemoteTarget):
        self.target = target
        self._session = requests.Session()
        adapter = _CheckedAdapter(target.allow_hosts, pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(target.headers)
        self._timeout = (min(CONNECT_SECONDS, target.timeout_s), target.timeout_s)

    def call(self, method: str, path: str, what: str, *, body: bytes | None = None,
             headers: dict | None = None) -> requests.Response:
        """The engine's response, whatever its status; EngineProblem when none came."""
        limit = self._timeout
        try:
            return self._session.request(method, self.target.url + path, data=body, headers=headers,
                                         timeout=limit, allow_redirects=False)
        except requests.ConnectTimeout:
            raise EngineProblem(UNREACHABLE, f"did not accept a connection for {what}") from None
        except requests.Timeout:
            raise EngineProblem(TIMEOUT, f"did not answer {what} within {limit[1]:g} s") from None
        except requests.RequestException as exc:
            if refusal_in(exc):
                raise EngineProblem(UNREACHABLE, f"{REFUSED_ADDRESS} (for {what})") from None
            raise EngineProblem(UNREACHABLE, f"could not be reached for {what} ({type(exc).__name__})") from None

    def close(self) -> None:
        self._session.close()

    def json(self, method: str, path: str, what: str, **kwargs) -> dict:
        """A 200 answer's JSON object; a health-style 4xx/503 is NOT_READY, anything else FAILED."""
        response = self.call(method, path, what, **kwargs)
        expect_ok(response, what)
        return parse_json(response.content, what)


def expect_ok(response: requests.Response, what: str) -> None:
    status = response.status_code
    if status == 200:
        return
    if status == 503:
        raise EngineProblem(NOT_READY, f"answered HTTP 503 to {what}")
    raise EngineProblem(FAILED, f"answered HTTP {status} to {what}")


def parse_json(content: bytes, what: str) -> dict:
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise EngineProblem(FAILED, f"answered {what} with a body that is not JSON") from None
    if not isinstance(value, dict):
        raise EngineProblem(FAILED, f"answered {what} with JSON that is not an object")
    return value


def malformed(what: str) -> EngineProblem:
    return EngineProblem(FAILED, f"answered {what} with a malformed body")


class Health:
    """What the engine said last about the model. /ready reads it without waiting; when it is
    older than HEALTH_SECONDS one probe refreshes it in the background. Every model call
    updates it too, so recovery is seen by the first call that succeeds."""

    def __init__(self, probe, clock=time.monotonic):
        self._probe, self._clock = probe, clock
        self.state, self._checked = READY, clock()
        self._busy = threading.Lock()

    def note(self, state: str) -> None:
        self.state, self._checked = state, self._clock()

    def current(self) -> str:
        if self._clock() - self._checked >= HEALTH_SECONDS and self._busy.acquire(blocking=False):
            threading.Thread(target=self._refresh, name="engine-health", daemon=True).start()
        return self.state

    def _refresh(self) -> None:
        try:
            self._probe()
            self.note(READY)
        except EngineProblem as problem:
            self.note(problem.state)
        except Exception:  # a probe must never take the health thread's caller down
            log.exception("probing the inference engine failed")
            self.note(FAILED)
        finally:
            self._busy.release()


class RemoteExecutor(Executor):
    """A model on a remote engine. Subclasses speak one protocol: `probe()` (is the model ready?),
    `_describe()` (its tensors), `_infer(batch)` (one remote call for the whole batch, outputs in
    `self.outputs` order)."""

    def __init__(self, target: RemoteTarget, size: tuple[int, int] | None = None, layout: str | None = None):
        self.target = target
        self.engine = self._connect(target)
        try:
            self.probe()
            self.input, self.outputs = self._describe(size, layout)
        except BaseException:
            self.engine.close()   # a failed load is retried with a new client: free this one's connections
            raise
        self.health = Health(self.probe)

    def _connect(self, target: RemoteTarget):
        """The client that carries every call to the engine (HTTP here; gRPC overrides it)."""
        return Engine(target)

    def probe(self) -> None:
        """Raise EngineProblem unless the engine says the model is ready."""
        raise NotImplementedError

    def _describe(self, size, layout) -> tuple[TensorInfo, list[TensorInfo]]:
        """The input and outputs from the engine's metadata; `size` and `layout` (model.json's
        input.size and input.layout) stand in where the protocol has none."""
        raise NotImplementedError

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def status(self) -> dict:
        return {"host": self.target.host, "state": self.health.current()}

    def run_raw(self, batch: np.ndarray) -> list[np.ndarray]:
        try:
            outputs = super().run_raw(batch)
        except EngineProblem as problem:
            gone = problem.state in (UNREACHABLE, NOT_READY)  # a bad or slow answer is not "gone"
            if not gone or self.health.state != problem.state:  # an outage is logged once, not per call
                log.warning("inference engine %s, model '%s': %s", self.target.host, self.target.model,
                            problem.reason)
            if gone:
                self.health.note(problem.state)
            raise problem.api_error() from None
        if self.health.state != READY:
            log.info("inference engine %s, model '%s': answers again", self.target.host, self.target.model)
        self.health.note(READY)
        return outputs

    def _invoke(self, batch: np.ndarray) -> list[np.ndarray]:
        return checked_outputs(self._infer(batch), self.outputs, len(batch))


def checked_outputs(arrays: list[np.ndarray], expected: list[TensorInfo], batch: int) -> list[np.ndarray]:
    """The engine's outputs if they have the declared shapes for this batch and finite values."""
    if len(arrays) != len(expected):
        raise EngineProblem(FAILED, f"answered {len(arrays)} outputs, expected {len(expected)}")
    for info, y in zip(expected, arrays):
        want = (batch, *info.shape[1:])
        if y.ndim != len(want) or any(w is not None and w != got for w, got in zip(want, y.shape)):
            shown = [d if d is not None else -1 for d in want]
            raise EngineProblem(FAILED, f"answered output '{info.name}' with shape {list(y.shape)}, "
                                        f"expected {shown}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise EngineProblem(FAILED, f"answered output '{info.name}' with NaN or infinite values")
    return arrays


def url_path(*parts: str) -> str:
    return "".join("/" + urllib.parse.quote(str(p), safe="") for p in parts)
