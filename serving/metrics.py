"""Prometheus metrics, one registry per app (two apps in one process never share counts)."""
from __future__ import annotations

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
    def __init__(self):
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
                               registry=self.registry)
        self.shared_store_errors = Counter("shared_store_errors_total",
                                           "Shared store (Redis) operations that failed: unavailable, timeout, refused, garbage",
                                           ["operation", "kind"], registry=self.registry)

    def watch_models(self, registry) -> None:
        """Export each configured model's state (model_state{model, state})."""
        self.registry.register(_ModelStateCollector(registry))

    def watch_shared_store(self, store) -> None:
        """shared_store_available: 1 while Redis is used, 0 while the service runs without it."""
        gauge = Gauge("shared_store_available", "1 while the shared store (Redis) is in use, 0 while it is not",
                      registry=self.registry)
        gauge.set_function(lambda: 1.0 if store.available else 0.0)

    def shared_store_error(self, operation: str, kind: str) -> None:
        self.shared_store_errors.labels(operation, kind).inc()

    def cache(self, hit: bool) -> None:
        self.cache_requests.labels("hit" if hit else "miss").inc()

    def inference(self, model: str, seconds: float) -> None:
        self.inference_seconds.labels(model).observe(seconds)

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
