"""Usage report: per image key, per model and per route, over the last MONITOR_WINDOW seconds.

Requests are counted in per-minute buckets, so memory grows with distinct keys per minute,
not with requests, and pruning is exact to the minute. Pruning runs on every record (not only
when the report is read). Cache hits count as requests and hits, never as 0-second processing.
At most `max_keys` image keys are tracked; the least recently seen is dropped past that. Image
keys are short by construction (dataplane.sources: a hash of the bytes or of the URL), so the
report's memory is bounded by the key cap, whoever the clients are.
"""
from __future__ import annotations

import collections
import dataclasses
import heapq
import threading
import time

BUCKET_SECONDS = 60
# Distinct image keys over the window, at most (in memory and in Redis): the bound on the
# report's size that docs/operations.md states.
MAX_IMAGES = 100_000
# The report's "series": requests and errors per minute over the last hour (the page's "requests
# over time"), read from the route buckets the report keeps anyway.
SERIES_MINUTES = 60


@dataclasses.dataclass(slots=True)
class Stats:
    requests: int = 0
    cache_hits: int = 0
    errors: int = 0
    processed: int = 0
    time_sum: float = 0.0
    time_min: float = float("inf")
    time_max: float = 0.0

    def add(self, seconds: float | None, hit: bool, error: bool) -> None:
        self.requests += 1
        if hit:
            self.cache_hits += 1
        elif error:
            self.errors += 1
        elif seconds is not None:
            self.processed += 1
            self.time_sum += seconds
            self.time_min = min(self.time_min, seconds)
            self.time_max = max(self.time_max, seconds)

    def merge(self, other: "Stats") -> None:
        self.requests += other.requests
        self.cache_hits += other.cache_hits
        self.errors += other.errors
        self.processed += other.processed
        self.time_sum += other.time_sum
        self.time_min = min(self.time_min, other.time_min)
        self.time_max = max(self.time_max, other.time_max)

    def as_dict(self) -> dict:
        processed = self.processed
        return {
            "num_requested": self.requests,
            "num_cache_hits": self.cache_hits,
            "num_errors": self.errors,
            "processing_time_min": round(self.time_min, 6) if processed else None,
            "processing_time_max": round(self.time_max, 6) if processed else None,
            "processing_time_mean": round(self.time_sum / processed, 6) if processed else None,
        }


class UsageReport:
    def __init__(self, window: float, top_n: int, max_keys: int = MAX_IMAGES, clock=time.time):
        self.window, self.top_n, self.max_keys, self.clock = window, top_n, max_keys, clock
        self._lock = threading.Lock()
        # group ("image" | "model" | "route") -> name -> {bucket: Stats}; images least recently seen first
        self._series: dict[str, dict[str, dict[int, Stats]]] = {
            "image": collections.OrderedDict(), "model": {}, "route": {}}
        self._order: collections.deque[tuple[int, str, str]] = collections.deque()  # (bucket, group, name)
        self._live = 0  # buckets held: _order may also hold entries of image keys dropped since

    def record(self, *, image_key: str | None, model: str | None, route: str,
               seconds: float | None, cache_hit: bool = False, error: bool = False) -> None:
        now = self.clock()
        bucket = int(now // BUCKET_SECONDS)
        with self._lock:
            self._prune(now)
            for group, name in (("image", image_key), ("model", model), ("route", route)):
                if name is None:
                    continue
                series = self._series[group]
                buckets = series.get(name)
                if buckets is None:
                    buckets = series[name] = {}
                    if group == "image" and len(series) > self.max_keys:
                        self._live -= len(series.popitem(last=False)[1])
                elif group == "image":
                    series.move_to_end(name)
                stats = buckets.get(bucket)
                if stats is None:
                    stats = buckets[bucket] = Stats()
                    self._order.append((bucket, group, name))
                    self._live += 1
                stats.add(seconds, cache_hit, error)
            if len(self._order) > 2 * self._live + 1024:
                self._compact()

    def _compact(self) -> None:
        """Forget queue entries of image keys dropped past max_keys: without this they would stay
        (with their names) until the window passes them, however many fresh images came."""
        series = self._series
        self._order = collections.deque(
            entry for entry in self._order
            if entry[0] in series[entry[1]].get(entry[2], ()))

    def _prune(self, now: float) -> None:
        oldest = int((now - self.window) // BUCKET_SECONDS)
        while self._order and self._order[0][0] <= oldest:
            bucket, group, name = self._order.popleft()
            buckets = self._series[group].get(name)
            if buckets is None or buckets.pop(bucket, None) is None:
                continue
            self._live -= 1
            if not buckets:
                del self._series[group][name]

    @property
    def empty(self) -> bool:
        return not self._order

    def drain(self) -> list[tuple[int, str, str, Stats]]:
        """Every (bucket, group, name, stats) held, and forget them: a shared report takes them over."""
        with self._lock:
            entries = [(bucket, group, name, stats) for group, series in self._series.items()
                       for name, buckets in series.items() for bucket, stats in buckets.items()]
            for series in self._series.values():
                series.clear()
            self._order.clear()
            self._live = 0
        return entries

    def absorb(self, entries: list[tuple[int, str, str, Stats]]) -> None:
        """Take back drained entries that could not be handed over."""
        with self._lock:
            for bucket, group, name, stats in entries:
                buckets = self._series[group].setdefault(name, {})
                if bucket in buckets:
                    buckets[bucket].merge(stats)
                else:
                    buckets[bucket] = stats
                    self._order.append((bucket, group, name))
                    self._live += 1
            self._order = collections.deque(sorted(self._order))  # pruning walks it oldest first

    def _totals(self, group: str, names=None) -> dict[str, Stats]:
        series = self._series[group]
        totals = {}
        for name in series if names is None else names:
            total = Stats()
            for stats in series[name].values():
                total.merge(stats)
            totals[name] = total
        return totals

    def _top_images(self) -> list[str]:
        """The top N keys (most requests first, then by key), from request counts alone: only
        those N get their statistics added up, not every image held (the lock is held)."""
        requests = ((-sum(stats.requests for stats in buckets.values()), name)
                    for name, buckets in self._series["image"].items())
        return [name for _, name in heapq.nsmallest(self.top_n, requests)]

    def snapshot(self) -> dict:
        with self._lock:
            now = self.clock()
            self._prune(now)
            top = self._totals("image", self._top_images()).items()
            distinct = len(self._series["image"])
            models = self._totals("model")
            routes = self._totals("route")
            series = minute_series(self._series["route"].values(), now, self.window)
        return {
            "window_seconds": self.window,
            "images": [{"key": key, **stats.as_dict()} for key, stats in top],
            "distinct_images": distinct,
            "models": {name: stats.as_dict() for name, stats in sorted(models.items())},
            "routes": {name: stats.as_dict() for name, stats in sorted(routes.items())},
            "series": series,
        }


def series_minutes(now: float, window: float) -> range:
    """The minutes (epoch seconds // 60) the series covers: the last SERIES_MINUTES up to now's,
    none older than the window keeps."""
    current, oldest = int(now // BUCKET_SECONDS), int((now - window) // BUCKET_SECONDS)
    return range(max(current - SERIES_MINUTES + 1, oldest + 1), current + 1)


def minute_series(route_buckets, now: float, window: float) -> dict:
    """Requests and errors per minute, every minute listed (0 where nothing came): each record has
    exactly one route, so the routes' buckets added up count every request once. `route_buckets`
    holds one {bucket: Stats} per route."""
    minutes = series_minutes(now, window)
    totals = {minute: Stats() for minute in minutes}
    for buckets in route_buckets:
        for bucket, stats in buckets.items():
            if bucket in totals:
                totals[bucket].merge(stats)
    return {"minutes": list(minutes), "requests": [totals[m].requests for m in minutes],
            "errors": [totals[m].errors for m in minutes]}
