"""The shared store's cost: `python -m bench.redis [--model mobilenet] [--requests 300] [--json out.json]`.

Starts a redis-server on a free loopback port and the service (`python app.py`) three times:
in memory (no REDIS_URL), with Redis, and with Redis killed. For each, one keep-alive client
sends /v2/classify requests one at a time and the latencies of a repeated image (a cache hit)
and of distinct images (misses, computed) are reported; then a burst of distinct images from
8 clients at once counts the statuses. In-process: a cache read and a report record through
Redis, /report over a full window (and how long another process' GET waits meanwhile), and
Redis' memory per cached result and per report entry.
Weights: --models-dir; --random-weights writes the real architecture with random weights there
(the same compute as the published weights).
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.__main__ import ROOT, Server, add_weight_arguments, bench_images, free_port, multipart, publish, timed


class Redis:
    def __init__(self, workdir: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        self.port, self.workdir, self.binary = free_port(), workdir, binary
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self) -> "Redis":
        import redis
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def distinct_images(count: int, offset: int) -> list[bytes]:
    """The benchmark photo with a numbered JPEG comment: the same pixels (the same cost to
    compute), a different sha256 (a cache miss)."""
    from PIL import Image

    base = Image.open(io.BytesIO(bench_images()["640x480"])).convert("RGB")
    out = []
    for i in range(offset, offset + count):
        buffer = io.BytesIO()
        base.save(buffer, format="JPEG", quality=90, comment=f"bench image {i}".encode())
        out.append(buffer.getvalue())
    return out


def post(conn: http.client.HTTPConnection, data: bytes) -> tuple[int, float, bool]:
    content_type, body = multipart(data)
    started = time.perf_counter()
    conn.request("POST", "/v2/classify", body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - started
    cached = response.status == 200 and json.loads(payload)["cached"]
    return response.status, elapsed, cached


def series(port: int, images: list[bytes]) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    results = [post(conn, data) for data in images]
    conn.close()
    latencies = sorted(elapsed * 1e3 for status, elapsed, _ in results if status == 200)
    statuses: dict[str, int] = {}
    for status, _, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {"requests": len(images), "statuses": statuses, "cached": sum(c for _, _, c in results),
            "p50_ms": statistics.median(latencies), "p95_ms": latencies[int(0.95 * (len(latencies) - 1))]}


def burst(port: int, images: list[bytes], clients: int = 8) -> dict:
    def one(data):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            return post(conn, data)[0]
        finally:
            conn.close()
    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(one, images))
    counts: dict[str, int] = {}
    for status in statuses:
        counts[str(status)] = counts.get(str(status), 0) + 1
    return {"requests": len(images), "clients": clients, "statuses": counts,
            "ok_pct": 100.0 * counts.get("200", 0) / len(images), "seconds": time.monotonic() - started}


def measure_mode(mode: str, env: dict, redis: Redis | None, requests: int, offset: int) -> dict:
    server = Server([sys.executable, "app.py"], env, "/ready")
    try:
        repeated = distinct_images(1, offset)[0]
        series(server.port, distinct_images(10, offset + 1))                 # warm the model
        series(server.port, [repeated])                                      # stored in the cache
        if mode == "redis stopped":
            redis.kill()
            series(server.port, [repeated] * 3)                              # the circuit opens
        out = {"hit": series(server.port, [repeated] * requests),
               "miss": series(server.port, distinct_images(requests, offset + 100)),
               "burst": burst(server.port, distinct_images(requests, offset + 100 + requests))}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/status")
        out["shared_store"] = json.loads(conn.getresponse().read()).get("shared_store")
        conn.request("GET", "/metrics")
        out["shared_store_errors"] = [line for line in conn.getresponse().read().decode().splitlines()
                                      if line.startswith("shared_store_errors_total")]
        conn.close()
        return out
    finally:
        server.stop()


def poll(redis_url: str, stop, waits) -> None:
    """GETs 1 ms apart until `stop`: how long Redis made them wait."""
    import redis

    client, times = redis.Redis.from_url(redis_url), []
    while not stop.is_set():
        started = time.perf_counter()
        client.get("bench:probe")
        times.append(time.perf_counter() - started)
        time.sleep(0.001)
    waits.put(times)


class Poller:
    """`poll` in another process (its own GIL and CPU time) for the duration of a `with` block."""

    def __init__(self, redis_url: str):
        self.stop, self.waits = multiprocessing.Event(), multiprocessing.Queue()
        self.process = multiprocessing.Process(target=poll, args=(redis_url, self.stop, self.waits))

    def __enter__(self) -> "Poller":
        self.process.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        times = sorted(self.waits.get())
        self.process.join()
        self.p99_ms, self.max_ms = times[int(0.99 * (len(times) - 1))] * 1e3, times[-1] * 1e3


def in_process(redis_url: str, samples: int = 2000) -> dict:
    """The store's own costs, without HTTP: one cache read, one report record, /report over a full window."""
    import redis

    from contract import CLASSIFICATION
    from dataplane.report import BUCKET_SECONDS
    from dataplane.shared_cache import SharedResultCache
    from dataplane.shared_report import SharedUsageReport
    from dataplane.shared_store import SharedStore

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    store = SharedStore(redis_url, prefix="bench")
    cache = SharedResultCache(store, 3600)
    key = (CLASSIFICATION, "mobilenet", 5, "sha256:" + "ab" * 32)
    value = (640, 480, [(f"label_{i}", f"n0{i:07d}", 0.1 * i) for i in range(5)])
    cache.put(key, value)
    before = client.info("memory")["used_memory"]
    for i in range(10_000):
        cache.put(key[:-1] + (f"sha256:{i:064x}",), value)
    per_cached = (client.info("memory")["used_memory"] - before) / 10_000

    def median_ms(function):
        return timed(function, samples) * 1e3

    now = [1_800_000_000.0]
    report = SharedUsageReport(store, window=3 * 86400, top_n=10, clock=lambda: now[0])
    out = {"cache_get_hit_p50_ms": median_ms(lambda: cache.get(key)),
           "report_record_p50_ms": median_ms(lambda: report.record(image_key="sha256:" + "cd" * 32, model="mobilenet",
                                                                   route="/v2/classify", seconds=0.02)),
           "redis_bytes_per_cached_result": round(per_cached)}
    # A full default window: 3 days of minutes, 20 distinct images a minute (86,400 entries).
    before = client.info("memory")["used_memory"]
    for minute in range(3 * 24 * 60):
        now[0] = 1_800_000_000.0 - 3 * 86400 + minute * BUCKET_SECONDS + 1
        for i in range(20):
            report.record(image_key=f"sha256:{(minute * 7 + i) % 5000:064x}", model="mobilenet",
                          route="/v2/classify", seconds=0.02)
    out["redis_bytes_per_report_entry"] = round((client.info("memory")["used_memory"] - before) / (3 * 24 * 60 * 20))
    times = []
    with Poller(redis_url) as idle:  # another replica's cache reads: first alone, then during /report
        time.sleep(3)
    with Poller(redis_url) as busy:
        for _ in range(5):
            started = time.perf_counter()
            snapshot = report.snapshot()
            times.append(time.perf_counter() - started)
    for name, poller in (("idle", idle), ("during_report", busy)):
        out[f"get_{name}_p99_ms"], out[f"get_{name}_max_ms"] = poller.p99_ms, poller.max_ms
    out["report_full_window_p50_ms"] = statistics.median(times) * 1e3
    out["report_full_window_distinct_images"] = snapshot["distinct_images"]
    client.flushall()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet")
    add_weight_arguments(parser)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from models.builtins import CATALOG
    if args.random_weights and args.model in CATALOG and not CATALOG[args.model].path(args.models_dir).exists():
        from bench.random_weights import write_weights
        write_weights(args.model, args.models_dir)

    env = {"IMAGE_CLASSIFICATION_ENABLED": "true", "IMAGE_CLASSIFICATION_MODEL": args.model,
           "MODELS_DIR": str(args.models_dir.resolve()), "MODEL_DOWNLOAD": "false", "PRELOAD_MODELS": "true",
           "OBJECT_DETECTION_ENABLED": "false"}
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "load_average_at_start": os.getloadavg()[0],
              "date": time.strftime("%Y-%m-%d"), "model": args.model, "command": "python -m bench.redis "
              + " ".join(argv if argv is not None else sys.argv[1:]), "modes": {}}
    with tempfile.TemporaryDirectory() as workdir:
        redis = Redis(Path(workdir)).start()
        try:
            report["in_process"] = in_process(redis.url)
            for offset, (mode, extra) in enumerate((("memory", {}), ("redis", {"REDIS_URL": redis.url}),
                                                    ("redis stopped", {"REDIS_URL": redis.url}))):
                if redis.process is None:
                    redis.start()
                print(f"measuring {mode} ...", flush=True)
                report["modes"][mode] = measure_mode(mode, {**env, **extra}, redis, args.requests,
                                                     offset * 10 * args.requests)
        finally:
            redis.kill()
    report["load_average_at_end"] = os.getloadavg()[0]
    return publish(report, args.json)


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
