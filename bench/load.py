"""A bounded soak on loopback: N clients for M minutes against the real server.

    python -m bench.load --serve --clients 16 --minutes 10 --images IMG [IMG ...] [--json out.json]

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


def run(url: str, images: list[bytes], route: str, clients: int, seconds: float,
        pid: int | None, sample_every: float) -> dict:
    statuses: collections.Counter = collections.Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    started = time.monotonic()

    def client(index: int):
        session = requests.Session()
        n = index
        while time.monotonic() < stop_at:
            data = images[n % len(images)]
            n += clients
            t0 = time.perf_counter()
            try:
                response = session.post(url + route, files={"image": ("image.jpg", data)}, timeout=60)
                key = str(response.status_code)
            except requests.RequestException as exc:
                key = type(exc).__name__
            elapsed = time.perf_counter() - t0
            with lock:
                statuses[key] += 1
                if key == "200":
                    latencies.append(elapsed)

    samples = []
    process = psutil.Process(pid) if pid else None

    def sampler():
        while time.monotonic() < stop_at:
            if process is not None:
                with process.oneshot():
                    samples.append({"t": round(time.monotonic() - started, 1),
                                    "rss_mb": round(process.memory_info().rss / 2**20, 1),
                                    "threads": process.num_threads(), "open_files": process.num_fds()})
            time.sleep(sample_every)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    duration = time.monotonic() - started
    result = {
        "url_route": route, "clients": clients, "seconds": round(duration, 1),
        "requests": sum(statuses.values()), "statuses": dict(statuses),
        "throughput_rps": round(sum(statuses.values()) / duration, 2),
        "latency_ms": {f"p{q}": round(percentile(latencies, q) * 1000, 1) for q in (50, 95, 99)},
        "samples": samples,
    }
    if samples:
        warm = [s for s in samples if s["t"] >= 0.2 * duration] or samples
        growth = (samples[-1]["rss_mb"] - warm[0]["rss_mb"]) / warm[0]["rss_mb"] * 100
        result["rss_growth_after_warmup_pct"] = round(growth, 1)
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
        result = run(url, images, args.route, args.clients, args.minutes * 60, pid, args.sample)
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
    ok = all(k == "200" for k in result["statuses"]) and result.get("rss_growth_after_warmup_pct", 0) < 10
    print("PASS" if ok else "FAIL: 5xx/errors or memory growth >= 10% after warm-up")
    return 0 if ok else 1


def urlparse_host(url: str) -> str:
    from urllib.parse import urlsplit
    return urlsplit(url).hostname or ""


if __name__ == "__main__":
    sys.exit(main())
