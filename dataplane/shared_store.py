"""The connection to Redis, shared by the result cache and the usage report, behind a circuit
breaker: Redis is an optimisation, never a dependency.

Every operation runs through `SharedStore.run(operation, call, default)`: the call gets a
client with short socket timeouts and no client-side retries, and any failure returns
`default` instead of raising. A connection failure, or `TIMEOUTS_TO_OPEN` time-outs in a row,
opens the circuit: for the next second (doubling to `MAX_BACKOFF` while failures go on) no
request touches Redis at all, then one request tries it again; its success closes the circuit.
(A lone time-out is only counted: on a busy machine a healthy Redis misses 50 ms now and then.) So a dead, slow or garbage-speaking
Redis costs a request at most one time-out, and a recovered one is used again without a restart.
One warning line per minute at most says the store is unavailable; neither the URL nor the
password ever reaches a log line, a metric or a response.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.connection import ConnectionPool, parse_url
from redis.retry import Retry

log = logging.getLogger("image_service.shared_store")

T = TypeVar("T")

# Cache reads and writes and report records sit on the request path: tens of milliseconds,
# so waiting for Redis never costs more than computing the answer.
FAST_TIMEOUT = 0.05
# /report merges the window in Redis: an operator's request, allowed to take longer.
REPORT_TIMEOUT = 2.0
CONNECT_TIMEOUT = 0.1
FIRST_BACKOFF, MAX_BACKOFF = 1.0, 8.0
LOG_EVERY = 60.0  # seconds between two "unavailable" warnings
TIMEOUTS_TO_OPEN = 3

# Errors that say Redis cannot be reached or cannot be understood: the circuit opens.
# (AuthenticationError and BusyLoadingError are ConnectionErrors; InvalidResponse is garbage.)
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.InvalidResponse, OSError)


def _pool(url: str, password: str, timeout: float) -> ConnectionPool:
    options = parse_url(url)
    if password:
        options["password"] = password
    # Ours win over anything in the URL's query string: short timeouts, no retries (the
    # circuit breaker decides when to try again), no background health checks.
    options.update(socket_timeout=timeout, socket_connect_timeout=CONNECT_TIMEOUT,
                   retry=Retry(NoBackoff(), 0), health_check_interval=0)
    return ConnectionPool(**options)


class SharedStore:
    def __init__(self, url: str, password: str = "", prefix: str = "ics", *,
                 fast_timeout: float = FAST_TIMEOUT, report_timeout: float = REPORT_TIMEOUT,
                 backoff: tuple[float, float] = (FIRST_BACKOFF, MAX_BACKOFF),
                 on_error: Callable[[str, str], None] | None = None, clock=time.monotonic):
        self.prefix = prefix
        # Two pools to the same server: the request path's, and the report's with a longer timeout.
        self.fast = redis.Redis(connection_pool=_pool(url, password, fast_timeout))
        self.slow = redis.Redis(connection_pool=_pool(url, password, report_timeout))
        self.first_backoff, self.max_backoff = backoff
        self.on_error, self.clock = on_error, clock
        self._lock = threading.Lock()
        self._open_until: float | None = None   # None: closed (Redis is used)
        self._down_since: float | None = None
        self._backoff = self.first_backoff
        self._probing = False
        self._timeouts = 0  # in a row, while the circuit is closed
        self._last_error: str | None = None
        self._last_log = float("-inf")
        self._logged_down = False

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix,) + parts)

    @property
    def available(self) -> bool:
        return self._open_until is None

    def run(self, operation: str, call: Callable[[redis.Redis], T], default: T, *, slow: bool = False) -> T:
        """`call(client)`, or `default` when the circuit is open or the call fails."""
        if not self._allow():
            return default
        try:
            result = call(self.slow if slow else self.fast)
        except redis.TimeoutError as exc:
            self._timed_out(operation, exc)
            return default
        except UNREACHABLE as exc:
            self._trip(operation, exc)
            return default
        except redis.RedisError as exc:  # answered, but refused: full (OOM), wrong type, read-only
            self._refused(operation, exc)
            self._recovered()  # it answered: it is reachable
            return default
        except Exception as exc:  # noqa: BLE001 - nothing from the store may fail a request
            self._trip(operation, exc)
            return default
        self._timeouts = 0
        self._recovered()
        return result

    def garbage(self, operation: str) -> None:
        """A value under our keys that is not ours: ignored, and counted."""
        self._count(operation, "garbage")

    def status(self) -> dict[str, Any]:
        with self._lock:
            now = self.clock()
            down = self._open_until is not None
            return {"backend": "redis", "available": not down, "prefix": self.prefix,
                    "unavailable_seconds": round(now - self._down_since, 1) if down else None,
                    "retry_in_seconds": round(max(0.0, self._open_until - now), 1) if down else None,
                    "last_error": self._last_error}

    # --- the circuit ------------------------------------------------------------------------

    def _allow(self) -> bool:
        if self._open_until is None:
            return True
        with self._lock:
            if self._open_until is None:
                return True
            if self._probing or self.clock() < self._open_until:
                return False
            self._probing = True  # this caller tries Redis again; the others keep skipping it
            return True

    def _timed_out(self, operation: str, exc: BaseException) -> None:
        with self._lock:
            self._timeouts += 1
            lone = self._open_until is None and self._timeouts < TIMEOUTS_TO_OPEN
        if lone:
            self._count(operation, "timeout")
        else:
            self._trip(operation, exc)

    def _trip(self, operation: str, exc: BaseException) -> None:
        self._count(operation, "unavailable")
        with self._lock:
            now = self.clock()
            self._last_error = type(exc).__name__
            if self._open_until is None:
                self._down_since = now
                self._backoff = self.first_backoff
            else:
                self._backoff = min(self._backoff * 2, self.max_backoff)
            self._open_until = now + self._backoff
            self._probing, self._timeouts = False, 0
            if now - self._last_log >= LOG_EVERY:
                self._last_log, self._logged_down = now, True
                log.warning("shared store (Redis) unavailable (%s during %s): serving without it, "
                            "retrying in %.0f s", self._last_error, operation, self._backoff)

    def _refused(self, operation: str, exc: redis.RedisError) -> None:
        self._count(operation, "refused")
        with self._lock:
            # Redis' error code only (OOM, WRONGTYPE, READONLY...), never the rest of its text.
            code = str(exc).split(" ", 1)[0]
            self._last_error = code if code.isalpha() and code.isupper() else type(exc).__name__
            now = self.clock()
            if now - self._last_log >= LOG_EVERY:
                self._last_log = now
                log.warning("shared store (Redis) refused %s (%s): serving without it", operation, self._last_error)

    def _recovered(self) -> None:
        if self._open_until is None:
            return
        with self._lock:
            if self._open_until is None:
                return
            self._open_until, self._down_since, self._probing = None, None, False
            self._backoff = self.first_backoff
            if self._logged_down:
                self._logged_down = False
                log.info("shared store (Redis) available again")

    def _count(self, operation: str, kind: str) -> None:
        if self.on_error is not None:
            self.on_error(operation, kind)
