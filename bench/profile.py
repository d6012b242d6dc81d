"""Where a loaded service spends its time: `python -m bench.profile [--model tiny_yolo]
[--clients 16] [--seconds 12] [--out DIR]`.

Starts `python app.py` under py-spy (as its parent, which lets py-spy read the process without
extra privileges), warms it up, drives one route with N keep-alive clients posting a 640x480
JPEG, stops it, and sums py-spy's samples by what the service was doing. Twice: with `--gil`
(only the thread that holds the interpreter lock: the serial part, what caps throughput in one
process) and without (every active thread, the lock released or not). The start-up (imports,
model load) is left out of the sums. py-spy pauses the process for each sample, so the
throughput under the profiler is lower than without it; the shares are what to read.
Weights: --models-dir, --random-weights as `python -m bench`.
"""
from __future__ import annotations

import argparse
import collections
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.__main__ import Server, add_weight_arguments, bench_images, drive, multipart, publish, service_env

# (what, markers): a sample counts for the first entry with a marker in its stack.
CATEGORIES = [
    ("multipart form parsing (werkzeug)", ("_parse_multipart",)),
    ("waitress I/O loop (sockets, HTTP parsing)", ("serve (serving/server.py",)),
    ("PIL image to numpy copy (tobytes)", ("__array_interface__",)),
    ("JPEG open, decode, EXIF (decode_image)", ("decode_image (dataplane/images.py",)),
    ("YOLO detection layers (decoding)", ("transform_prediction (", "decode_heads (")),
    ("network call", ("forward (detectors/", "_infer", "runtimes/openvino.py")),
    ("letterbox or resize", ("letterboxed (", "to_array (")),
    ("candidates, NMS, rescaling", ("candidates (", "candidates_np (", "suppress", "rescaled_np (",
                                    "detect (detectors/imageai_yolo.py")),
    ("JSON answer", ("iterencode", "dumps (json")),
    ("access log line", ("info (logging",)),
    ("upload hashing", ("of_bytes (",)),
    ("metrics", ("serving/metrics.py",)),
    ("rest of Flask and werkzeug", ("flask/", "werkzeug/")),
]
STARTUP = ("_find_and_load", "ensure_loaded")


def summarise(raw: Path) -> dict:
    """py-spy's raw output (`stack count` lines) summed by CATEGORIES and by thread."""
    by_category: collections.Counter = collections.Counter()
    by_thread: collections.Counter = collections.Counter()
    total = startup = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        if any(marker in stack for marker in STARTUP):
            startup += samples
            continue
        total += samples
        by_thread["model thread" if "registry/batching.py" in stack else
                  "waitress threads" if "waitress/" in stack else "other"] += samples
        by_category[next((name for name, markers in CATEGORIES if any(m in stack for m in markers)), "other")] += samples
    share = (lambda counter: {k: round(100 * v / total, 1) for k, v in counter.most_common()}) if total else dict
    return {"samples": total, "startup_samples_left_out": startup,
            "threads_pct": share(by_thread), "categories_pct": share(by_category)}


def profile(name: str, args, mode: str) -> dict:
    env, path = service_env(name, args.models_dir, args.runtime)
    content_type, body = multipart(bench_images()["640x480"])
    raw = args.out / f"{name}-{mode}.txt"
    command = [args.py_spy, "record", "--rate", str(args.rate), "--format", "raw", "-o", str(raw),
               *(["--gil"] if mode == "gil" else []), "--", sys.executable, "app.py"]
    server = Server(command, env, "/ready")
    try:
        drive(server.port, path, body, content_type, args.clients, 3.0)   # warm-up
        load = drive(server.port, path, body, content_type, args.clients, args.seconds)
    finally:
        server.process.send_signal(signal.SIGINT)   # py-spy writes its file and stops the service
        try:
            server.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.process.kill()
    return {"load": load, **summarise(raw), "raw": str(raw)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_yolo")
    parser.add_argument("--runtime", default="openvino", help="INFERENCE_RUNTIME (tensorflow: the model's framework)")
    add_weight_arguments(parser)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=Path("profile"), help="folder for py-spy's raw files")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(args.py_spy).exists():
        raise SystemExit("py-spy is not installed (pip install -r requirements-dev.txt)")
    if args.random_weights:
        from bench.random_weights import CALIBRATED_CANDIDATES, write_missing
        write_missing([args.model], args.models_dir, CALIBRATED_CANDIDATES)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "model": args.model, "runtime": args.runtime,
              "clients": args.clients, "seconds": args.seconds, "rate": args.rate,
              "modes": {mode: profile(args.model, args, mode) for mode in ("gil", "active")}}
    return publish(report, args.json, show)


def show(report: dict) -> None:
    print(f"machine: {report['machine']}; {report['model']} on {report['runtime']}, {report['clients']} clients, "
          f"started {report['started']}")
    for mode, entry in report["modes"].items():
        title = "holding the interpreter lock" if mode == "gil" else "every active thread"
        print(f"\n{title}: {entry['samples']} samples, {entry['load']['throughput_rps']:.1f} req/s under the profiler")
        for what, pct in {**entry["threads_pct"], **entry["categories_pct"]}.items():
            print(f"  {pct:5.1f} %  {what}")


if __name__ == "__main__":
    raise SystemExit(main())
