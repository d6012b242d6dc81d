"""A bounded soak on loopback: N clients for M minutes against the real server.

    python -m bench.load --serve --clients 16 --minutes 10 --images IMG [IMG ...] [--json out.json]
    python -m bench.load --serve --mix --clients 24 --minutes 60 --images IMG [IMG ...]

--mix sends the traffic a deployment sees instead of one route: the seed routes, /v2 batches,
image URLs served by a loopback image server this tool starts (give the server
FETCH_ALLOW_HOSTS=127.0.0.1), repeated images (cache hits), fresh images (misses), and bad
files; each request knows which statuses are acceptable (200 or a quick 503 for good input,
400/413/415 or 503 for bad input), and a prober measures /health latency throughout.

With --serve it starts `python app.py` (the environment configures it; PORT is chosen) and
samples the server's resident memory, threads and open files every --sample seconds; with
--url it drives a running server (and samples it when --pid is given). Prints status counts,
latency percentiles, throughput and the samples, and says whether memory grew more than 10%
after the warm-up (the first 20% of the run). Traffic goes only to the URL given (loopback).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import requests


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PORT=str(port))
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen([sys.executable, "app.py"], cwd=root, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/ready", timeout=2).status_code == 200:
                return process, url
        except requests.RequestException:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("the server did not become ready within 300 s (set PRELOAD_MODELS=true)")


class ImageHost:
    """A loopback HTTP server for the image URLs of the mix (threaded, quiet)."""

    def __init__(self, images: list[bytes]):
        import http.server

        blobs = images

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                try:
                    body = blobs[int(self.path.strip("/").split(".")[0]) % len(blobs)]
                except ValueError:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


BAD_FILES = (b"", b"GIF89a not really", b"%PDF-1.4\n" + b"x" * 500, b"8BPS\x00\x01" + b"\x00" * 40,
             b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64)
GOOD, BAD = {"200", "503"}, {"400", "413", "415", "503"}


def mixed_request(n: int, images: list[bytes], host: ImageHost) -> tuple[str, dict, set[str]]:
    """The n-th request of the mix: (route, requests keyword arguments, acceptable statuses)."""
    kind = n % 10
    image = images[n % len(images)]
    if kind in (0, 1):   # a repeated image: a cache hit after the first time
        return "/classify-image", {"files": {"image": ("a.jpg", image)}}, GOOD
    if kind in (2, 3):   # a fresh image every time: a cache miss
        return "/detect-objects", {"files": {"image": ("a.jpg", fresh_jpeg(n))}}, GOOD
    if kind == 4:
        return "/v2/classify", {"files": [("image", (f"{i}.jpg", images[(n + i) % len(images)])) for i in range(3)]}, GOOD
    if kind == 5:
        return "/v2/detect", {"json": {"images": [{"image_url": f"{host.url}/{n}.jpg"},
                                                  {"image_url": f"{host.url}/{n + 1}.jpg"}]}}, GOOD
    if kind == 6:
        return "/classify-image", {"json": {"image_url": f"{host.url}/{n}.jpg"}}, GOOD
    if kind == 7:
        return "/v2/detect", {"files": {"image": ("a.jpg", fresh_jpeg(n))}, "params": {"annotate": "true"}}, GOOD
    if kind == 8:
        return "/classify-image", {"files": {"image": ("bad.jpg", BAD_FILES[n % len(BAD_FILES)])}}, BAD
    return "/detect-objects", {"files": {"image": ("cut.jpg", image[: len(image) // 2])}}, BAD


def fresh_jpeg(n: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(n).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def probe_health(url: str, stop_at: float, latencies: list[float], failures: collections.Counter) -> None:
    session = requests.Session()
    while time.monotonic() < stop_at:
        t0 = time.perf_counter()
        try:
            status = session.get(url + "/health", timeout=5).status_code
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                failures[str(status)] += 1
        except requests.RequestException as exc:
            failures[type(exc).__name__] += 1
        time.sleep(0.5)


class Tally:
    """What the clients saw, shared between their threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statuses: collections.Counter = collections.Counter()
        self.unexpected: collections.Counter = collections.Counter()
        self.latencies: list[float] = []
        self.refusals: list[float] = []  # how long a 503 took: the excess must be refused quickly

    def add(self, path: str, key: str, acceptable: set[str], elapsed: float) -> None:
        with self.lock:
            self.statuses[key] += 1
            if key not in acceptable:
                self.unexpected[f"{path} {key}"] += 1
            if key == "200":
                self.latencies.append(elapsed)
            elif key.startswith("503"):
                self.refusals.append(elapsed)


def drive(url: str, index: int, clients: int, stop_at: float, next_request, tally: Tally) -> None:
    """One client: requests back to back until `stop_at`, each on a kept-alive session."""
    session = requests.Session()
    n = index
    while time.monotonic() < stop_at:
        path, kwargs, acceptable = next_request(n)
        n += clients
        t0 = time.perf_counter()
        try:
            response = session.post(url + path, timeout=60, **kwargs)
            key = str(response.status_code)
            if key == "503" and not response.headers.get("Retry-After", "").isdigit():
                key = "503 without Retry-After"
        except requests.RequestException as exc:
            key = type(exc).__name__
        tally.add(path, key, acceptable, time.perf_counter() - t0)


def sample_process(pid: int | None, started: float, stop_at: float, every: float, samples: list) -> None:
    """The server's memory, threads and open files; under WORKERS > 1 the supervisor's and its
    workers' added up (and how many processes that was)."""
    process = psutil.Process(pid) if pid else None
    while process is not None and time.monotonic() < stop_at:
        sample = {"t": round(time.monotonic() - started, 1), "rss_mb": 0.0, "threads": 0, "open_files": 0,
                  "processes": 0}
        for each in [process] + process.children(recursive=True):
            try:
                with each.oneshot():
                    rss, threads, files = each.memory_info().rss, each.num_threads(), each.num_fds()
            except psutil.NoSuchProcess:  # a worker that just exited
                continue
            sample["rss_mb"] += round(rss / 2**20, 1)
            sample["threads"] += threads
            sample["open_files"] += files
            sample["processes"] += 1
        sample["rss_mb"] = round(sample["rss_mb"], 1)
        samples.append(sample)
        time.sleep(every)


def run(url: str, images: list[bytes], route: str, clients: int, seconds: float,
        pid: int | None, sample_every: float, mix: bool = False) -> dict:
    started = time.monotonic()
    stop_at = started + seconds
    if mix:
        host = ImageHost(images)
        next_request = lambda n: mixed_request(n, images, host)
    else:
        next_request = lambda n: (route, {"files": {"image": ("image.jpg", images[n % len(images)])}}, {"200"})
    tally, samples, health, health_failures = Tally(), [], [], collections.Counter()
    background = [threading.Thread(target=probe_health, args=(url, stop_at, health, health_failures), daemon=True),
                  threading.Thread(target=sample_process, args=(pid, started, stop_at, sample_every, samples),
                                   daemon=True)]
    threads = [threading.Thread(target=drive, args=(url, i, clients, stop_at, next_request, tally))
               for i in range(clients)]
    for t in background + threads:
        t.start()
    for t in threads:
        t.join()
    duration = time.monotonic() - started
    total = sum(tally.statuses.values())
    result = {
        "url_route": "mix" if mix else route, "clients": clients, "seconds": round(duration, 1),
        "requests": total, "statuses": dict(tally.statuses), "throughput_rps": round(total / duration, 2),
        "latency_ms": {f"p{q}": round(percentile(tally.latencies, q) * 1000, 1) for q in (50, 95, 99)},
        "refused_ms": {f"p{q}": round(percentile(tally.refusals, q) * 1000, 1) for q in (50, 95, 99)},
        "unexpected": dict(tally.unexpected),
        "health": {"probes": len(health), "failures": dict(health_failures),
                   **{f"p{q}_ms": round(percentile(health, q) * 1000, 1) for q in (50, 99)}},
        "samples": samples,
    }
    if samples:
        warm = [s for s in samples if s["t"] >= 0.2 * duration] or samples
        result["rss_growth_after_warmup_pct"] = round((samples[-1]["rss_mb"] - warm[0]["rss_mb"])
                                                      / warm[0]["rss_mb"] * 100, 1)
        result["threads_range"] = [min(s["threads"] for s in warm), max(s["threads"] for s in warm)]
        result["open_files_range"] = [min(s["open_files"] for s in warm), max(s["open_files"] for s in warm)]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--serve", action="store_true", help="start `python app.py` and drive it")
    target.add_argument("--url", help="a running server, e.g. http://127.0.0.1:5001")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, to sample it")
    parser.add_argument("--route", default="/classify-image")
    parser.add_argument("--mix", action="store_true", help="the mixed workload instead of one route")
    parser.add_argument("--images", nargs="+", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    if args.url and urlparse_host(args.url) not in ("127.0.0.1", "localhost", "::1"):
        parser.error("load runs only against loopback")
    images = [p.read_bytes() for p in args.images]
    process = None
    if args.serve:
        process, url = start_server()
        pid = process.pid
    else:
        url, pid = args.url.rstrip("/"), args.pid
    try:
        result = run(url, images, args.route, args.clients, args.minutes * 60, pid, args.sample, mix=args.mix)
    finally:
        if process is not None:
            process.terminate()
            result_code = process.wait(timeout=60)
            print(f"server exit code after SIGTERM: {result_code}")
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    for s in result["samples"][:: max(1, len(result["samples"]) // 12)]:
        print(f"  t={s['t']:>6}s rss={s['rss_mb']} MB threads={s['threads']} open_files={s['open_files']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    ok = (not result["unexpected"] and result.get("rss_growth_after_warmup_pct", 0) < 10
          and not result["health"]["failures"] and result["health"]["p99_ms"] < 200)
    print("PASS" if ok else "FAIL: unexpected statuses, /health slow or failing, or memory growth >= 10% after warm-up")
    return 0 if ok else 1


def urlparse_host(url: str) -> str:
    from urllib.parse import urlsplit
    return urlsplit(url).hostname or ""


if __name__ == "__main__":
    sys.exit(main())
