"""Prometheus metrics, one registry per app (two apps in one process never share counts).

Under WORKERS > 1 every worker writes its counts to the supervisor's directory (prometheus_client's
multiprocess mode, chosen when it is imported) and a scrape, whichever worker answers it, adds up
every worker's: requests and latencies of workers that have exited included, in-flight requests and
model states of the live ones (model_state then counts the workers in each state).
"""
from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from registry import STATES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _ModelStateCollector:
    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        family = GaugeMetricFamily("model_state", "1 for the state each model is in", labels=["model", "state"])
        for name, slot in self.registry.slots.items():
            for state in STATES:
                family.add_metric([name, state], 1.0 if slot.state == state else 0.0)
        yield family


class Metrics:
    content_type = CONTENT_TYPE   # of render()'s text

    def __init__(self, shared_dir: str | None = None):
        """`shared_dir`: the workers' multiprocess directory (None: this process alone)."""
        self.shared_dir = shared_dir
        self._gauges = []   # functions that set gauges from this process' state (multiprocess mode)
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency by route",
                                 ["route"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.inference_seconds = Histogram("model_inference_seconds", "Model call time by model",
                                           ["model"], registry=self.registry,
                                           buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.cache_requests = Counter("result_cache_requests_total", "Result cache lookups",
                                      ["result"], registry=self.registry)
        self.in_flight = Gauge("http_requests_in_flight", "Requests being served now",
                               registry=self.registry, multiprocess_mode="livesum")
        self.shared_store_errors = Counter("shared_store_errors_total",
                                           "Shared store (Redis) operations that failed: unavailable, timeout, refused, garbage",
                                           ["operation", "kind"], registry=self.registry)
        self.image_url_failures = Counter("image_url_failures_total",
                                          "Image URLs refused or failed, by reason: invalid, blocked, unreachable, "
                                          "timeout, remote_answer, too_large", ["reason"], registry=self.registry)

    def watch_models(self, registry) -> None:
        """Export each configured model's state (model_state{model, state})."""
        if not self.shared_dir:
            self.registry.register(_ModelStateCollector(registry))
            return
        gauge = Gauge("model_state", "Workers in each state, per model", ["model", "state"],
                      registry=self.registry, multiprocess_mode="livesum")

        def fill():
            for name, slot in registry.slots.items():
                for state in STATES:
                    gauge.labels(name, state).set(1.0 if slot.state == state else 0.0)
        self._refreshed(fill)

    def watch_shared_store(self, store) -> None:
        """shared_store_available: 1 while Redis is used, 0 while the service runs without it
        (with several workers: 0 while any of them runs without it)."""
        gauge = Gauge("shared_store_available", "1 while the shared store (Redis) is in use, 0 while it is not",
                      registry=self.registry, multiprocess_mode="livemin")
        if not self.shared_dir:
            gauge.set_function(lambda: 1.0 if store.available else 0.0)
            return
        self._refreshed(lambda: gauge.set(1.0 if store.available else 0.0))

    def _refreshed(self, fill, interval: float = 1.0) -> None:
        """A gauge computed from this process' state: written now, every `interval` seconds (for
        the scrapes other workers answer), and before each scrape this worker answers."""
        fill()
        self._gauges.append(fill)
        if len(self._gauges) == 1:
            def refresh():
                while True:
                    time.sleep(interval)
                    for each in list(self._gauges):
                        each()
            threading.Thread(target=refresh, name="metrics-refresh", daemon=True).start()

    def shared_store_error(self, operation: str, kind: str) -> None:
        self.shared_store_errors.labels(operation, kind).inc()

    def image_url_failure(self, reason: str) -> None:
        self.image_url_failures.labels(reason).inc()

    def cache(self, hit: bool) -> None:
        self.cache_requests.labels("hit" if hit else "miss").inc()

    def inference(self, model: str, seconds: float) -> None:
        self.inference_seconds.labels(model).observe(seconds)

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        if not self.shared_dir:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        for fill in self._gauges:
            fill()
        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker, path=self.shared_dir)
        return generate_latest(every_worker)
