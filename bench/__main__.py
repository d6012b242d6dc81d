"""The benchmark: `python -m bench [--models mobilenet,tiny_yolo] [--smoke] [--json out.json]`.

For each model and each runtime of --runtimes (default `tensorflow,openvino`: each model's
framework, TensorFlow or torch, beside OpenVINO), in one run:
- raw cost in-process (in a process per model and runtime, set up as that runtime's service
  process is): decode (+ reduced-scale decode for classifiers) + resize + the
  compiled model call, on a 640x480 and a 12 MP JPEG;
- the service as deployed (`python app.py` under waitress, configured by the environment):
  time from start to ready, latency p50/p95/p99 at concurrency 1, throughput at concurrency
  1, 4, 8, 16, and peak resident memory;
- the naive baseline (`bench.naive_app`: Flask + `model.predict` per request) on the same
  model and images, under the same load (on the framework's run);
- on OpenVINO, a cold start with an empty converted-model cache (the service's own start, after
  the raw run filled the cache, is the cold start with a warm cache);
then the OpenVINO/framework ratios against their targets (bench/compare.py).
Clients run in this process over loopback with keep-alive connections. Weight files come from
--models-dir; --random-weights writes files of the real architectures with random weights
there first (same compute as the published weights, which cannot be downloaded everywhere).
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.compare import compare, print_comparison

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


# --- inputs ---------------------------------------------------------------------------------

def bench_images() -> dict[str, bytes]:
    """Real photos at the benchmark sizes (a generated scene when ../shared is missing)."""
    from PIL import Image, ImageDraw

    photo = SHARED / "images" / "darknet" / "dog.jpg"
    big_photo = SHARED / "images" / "coral" / "kite_and_cold.jpg"
    if photo.exists() and big_photo.exists():
        small = Image.open(photo).convert("RGB").resize((640, 480), Image.LANCZOS)
        big = Image.open(big_photo).convert("RGB").resize((4000, 3000), Image.LANCZOS)
    else:
        small = Image.new("RGB", (640, 480), (90, 140, 200))
        ImageDraw.Draw(small).ellipse((200, 120, 440, 360), fill=(200, 120, 40))
        big = small.resize((4000, 3000), Image.LANCZOS)
    out = {}
    for name, img in (("640x480", small), ("12MP", big)):
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=90)
        out[name] = buffer.getvalue()
    return out


def multipart(data: bytes) -> tuple[str, bytes]:
    boundary = "benchboundary7c1e"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="i.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


# --- raw cost in-process ---------------------------------------------------------------------

def timed(function, repeat: int, sync=lambda: None) -> float:
    """Median seconds of `function()`; `sync` waits for queued device work (CUDA runs
    asynchronously: without it a timing measures only the launch)."""
    function()  # warm
    sync()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        sync()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def torch_device(network):
    """The device a torch network's weights live on, and the matching synchroniser."""
    import torch

    device = next(network.parameters()).device
    if device.type == "cuda":
        return device, lambda: torch.cuda.synchronize(device)
    return device, lambda: None


def describe_device() -> str:
    """The accelerator the run could use, named in the report."""
    try:
        import torch
        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return "cpu"


def model_task(name: str) -> str:
    from registry import TASKS

    return "classification" if name in TASKS["classification"].builtins else "detection"


def service_options(runtime: str = "openvino"):
    """How a serving process runs `runtime` (openvino, or the model's framework): in-process
    measurements at the thread count the service's processes get (INTRA_OP_THREADS, or the CPUs
    divided among WORKERS, as serving/workers.py divides them), so the raw costs, the convolution
    rate and the service are timed alike."""
    import dataclasses

    from config import Settings
    from contract import FRAMEWORK, OPENVINO

    settings = Settings.from_env()
    return dataclasses.replace(settings.inference_options,
                               runtime=OPENVINO if runtime == OPENVINO else FRAMEWORK,
                               intra_op_threads=settings.intra_op_threads
                               or max(1, len(os.sched_getaffinity(0)) // settings.workers))


def require_frameworks(names: list[str], models_dir: Path) -> None:
    """Import every framework the named models need, in the one order that works in a process
    (torch before TensorFlow), and no other: a GPU host may have no TensorFlow."""
    from registry import create_model
    from runtimes import frameworks

    frameworks.require(set().union(*(create_model(model_task(name), name, models_dir, download=False).frameworks
                                     for name in names)))


def load_model(name: str, models_dir: Path, runtime: str):
    """The built-in model loaded in this process on `runtime` (openvino, or its framework), as
    a serving process would run it."""
    from registry import create_model
    from runtimes import frameworks

    options = service_options(runtime)
    model = create_model(model_task(name), name, models_dir, download=False, options=options)
    frameworks.require(model.frameworks, options)   # a no-op where main() imported them already
    model.load()
    if runtime == "openvino" and model.runtime != runtime:
        raise RuntimeError(f"{name} runs on {model.runtime}, not OpenVINO: {model.describe()}")
    return model


def raw_cost(name: str, models_dir: Path, images: dict[str, bytes], repeat: int,
             runtime: str) -> tuple[dict, str]:
    """Per image size, the in-process costs in ms on `runtime`; and the device the network ran on."""
    from dataplane.images import decode_image
    from registry import TASKS

    result = {}
    model = load_model(name, models_dir, runtime)
    if name in TASKS["classification"].builtins:
        for label, data in images.items():
            full = timed(lambda: model.to_array([decode_image(data).image]), repeat)
            draft = timed(lambda: model.to_array([decode_image(data, size_hint=model.input_size).image]), repeat)
            image = decode_image(data, size_hint=model.input_size).image
            call = timed(lambda: model.predict([image]), repeat)
            batch = model.to_array([image] * 8)
            infer8 = timed(lambda: model._infer(model._preprocess(batch.copy())), max(3, repeat // 2))
            infer1 = timed(lambda: model._infer(model._preprocess(batch[:1].copy())), repeat)
            result[label] = {"decode_resize_full_ms": full * 1e3, "decode_resize_draft_ms": draft * 1e3,
                             "model_call_ms": call * 1e3, "raw_ms": (draft + call) * 1e3,
                             "compiled_batch1_ms": infer1 * 1e3, "compiled_batch8_ms": infer8 * 1e3,
                             "batch8_speedup": (8 * infer1) / infer8}
        return result, model.device
    import numpy as np

    from detectors.imageai_yolo import letterboxed

    # On torch the network may sit on a GPU: its timings wait for the device's queued work.
    sync = torch_device(model._detector._ObjectDetection__model)[1] if model.runtime == "torch" else (lambda: None)
    for label, data in images.items():
        decode = timed(lambda: decode_image(data), repeat)
        image = decode_image(data).image
        detect = timed(lambda: model.predict([image], 0.3), repeat, sync)
        # A micro-batch of 8 (what 8 concurrent clients become): one predict() call.
        detect8 = timed(lambda: model.predict([image] * 8, 0.3), max(3, repeat // 2), sync)
        entry = {"decode_ms": decode * 1e3, "detect_ms": detect * 1e3, "raw_ms": (decode + detect) * 1e3,
                 "detect_batch8_ms": detect8 * 1e3, "detect_batch8_speedup": 8 * detect / detect8}
        if model.model_type != "RetinaNet":
            # The network's forward pass, its detection layers included, on this runtime.
            rgb = np.asarray(image)
            inputs = letterboxed(rgb)
            forward = timed(lambda: model._forward(inputs), repeat, sync)
            stacked = np.concatenate([inputs] * 8)
            forward8 = timed(lambda: model._forward(stacked), max(3, repeat // 2), sync)
            prep = timed(lambda: letterboxed(rgb), repeat)
            entry.update(forward_ms=forward * 1e3, forward_batch8_ms=forward8 * 1e3, preprocess_ms=prep * 1e3,
                         outside_forward_ms=(detect - forward) * 1e3,
                         outside_forward_pct_of_forward=100 * (detect - forward) / forward)
        result[label] = entry
    return result, model.device


def raw_cost_alone(name: str, models_dir: Path, sizes: list[str], repeat: int, runtime: str) -> tuple[dict, str]:
    """raw_cost in a process of its own, set up as the service's process for `runtime` is (thread
    pools, and torch's OpenMP spin, which depends on the runtime: runtimes/frameworks.py), so
    each runtime's in-process cost is measured as its service runs."""
    result = in_own_process(["bench", "--raw-cost", name, runtime, str(repeat), str(models_dir), ",".join(sizes)],
                            f"raw cost of {name} on {runtime}")
    return result["raw"], result["device"]


def in_own_process(module_and_args: list[str], what: str, env: dict | None = None, timeout: float = 3600) -> dict:
    """Run `python -m <module> <args>` in a fresh process and return the JSON its last stdout
    line prints: a measurement whose process set-up (thread pools, OpenMP) must be its own."""
    done = subprocess.run([sys.executable, "-m", *module_and_args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _raw_cost_child(name: str, runtime: str, repeat: str, models_dir: str, sizes: str) -> int:
    images = {size: data for size, data in bench_images().items() if size in sizes.split(",")}
    raw, device = raw_cost(name, Path(models_dir), images, int(repeat), runtime)
    print(json.dumps({"raw": raw, "device": device}))
    return 0


# --- servers and load ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, command: list[str], env: dict[str, str], ready_path: str):
        self.port = free_port()
        environment = {**os.environ, **env, "PORT": str(self.port)}
        started = time.monotonic()
        self.process = subprocess.Popen(command, cwd=ROOT, env=environment,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = started + 600
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", ready_path)
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"{command} did not become ready")
        self.ready_seconds = time.monotonic() - started

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory; under WORKERS > 1, the supervisor's and its
        workers' peaks added up."""
        import psutil

        total = 0.0
        for pid in [self.process.pid] + [c.pid for c in psutil.Process(self.process.pid).children(recursive=True)]:
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except FileNotFoundError:  # a worker that has just exited
                continue
            total += sum(int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:"))
        return total or float("nan")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def drive(port: int, path: str, body: bytes, content_type: str, concurrency: int, seconds: float) -> dict:
    latencies, statuses = [], {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": content_type})
                response = conn.getresponse()
                response.read()
                status = response.status
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                status = "error"
            elapsed = time.perf_counter() - started
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(elapsed)
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    duration = time.monotonic() - started
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))] * 1e3 if latencies else None
    return {"concurrency": concurrency, "ok": len(latencies), "statuses": {str(k): v for k, v in statuses.items()},
            "throughput_rps": len(latencies) / duration, "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99)}


def measure_server(server: Server, path: str, images: dict[str, bytes], levels: list[int], seconds: float) -> dict:
    out = {"ready_seconds": server.ready_seconds, "images": {}}
    for label, data in images.items():
        content_type, body = multipart(data)
        drive(server.port, path, body, content_type, 1, min(2.0, seconds))  # warm-up
        out["images"][label] = [drive(server.port, path, body, content_type, c, seconds) for c in levels]
    out["peak_rss_mb"] = server.peak_rss_mb()
    return out


# --- report ----------------------------------------------------------------------------------

def publish(report: dict, path: Path | None, show=None) -> int:
    """Every benchmark's last step: show the report (its own printer, or the JSON) and write
    the JSON to `path` when one was given. The exit code."""
    text = json.dumps(report, indent=2, default=str)
    show(report) if show else print(text)
    if path:
        path.write_text(text)
    return 0


def fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(report: dict) -> None:
    print(f"\nmachine: {report['machine']}, device: {report.get('device', 'cpu')}; started {report.get('started')}; load average "
          f"{report.get('load_average_at_start')} at start, {report.get('load_average_at_end')} at end")
    compute = report.get("compute")
    if compute and compute.get("error"):
        print(f"convolution rate not measured: {compute['error']}")
    elif compute:
        print("measured convolution rate, " + ", ".join(f"{p} {fmt(r)} GFLOP/s" for p, r in compute["conv_gflops_per_s"].items())
              + f" ({compute['threads']} threads)")
    for name, entry in report["models"].items():
        print(f"\n== {name} (on {entry.get('device', 'cpu')}) ==")
        if entry.get("network"):
            print(f"network: {fmt(entry['network']['gflop'], 2)} GFLOP per image at {entry['network']['input_shape']}")
        for label, raw in entry["raw"].items():
            print(f"raw {label}: " + ", ".join(f"{k} {fmt(v)}" for k, v in raw.items()))
        for system in ("service", "naive"):
            data = entry.get(system)
            if not data:
                continue
            print(f"{system}{' on ' + entry['runtime'] if system == 'service' else ''}: ready in {fmt(data['ready_seconds'])} s, peak RSS {fmt(data['peak_rss_mb'], 0)} MB")
            for label, levels in data["images"].items():
                for level in levels:
                    others = {k: v for k, v in level["statuses"].items() if k != "200"}
                    print(f"  {label:8} c={level['concurrency']:<3} {fmt(level['throughput_rps'], 2):>7} req/s  "
                          f"p50 {fmt(level['p50_ms']):>7} p95 {fmt(level['p95_ms']):>7} p99 {fmt(level['p99_ms']):>7} ms"
                          + (f"  other statuses {others}" if others else ""))
    print_comparison(report.get("comparison", {}))


def service_env(name: str, models_dir: Path, runtime: str) -> tuple[dict, str]:
    from registry import TASKS

    classifier = name in TASKS["classification"].builtins
    env = {"MODELS_DIR": str(models_dir), "MODEL_DOWNLOAD": "false", "PRELOAD_MODELS": "true",
           "CACHE_MAXSIZE": "0", "INFERENCE_RUNTIME": runtime,
           "IMAGE_CLASSIFICATION_ENABLED": str(classifier).lower(),
           "OBJECT_DETECTION_ENABLED": str(not classifier).lower(),
           "IMAGE_CLASSIFICATION_MODEL" if classifier else "OBJECT_DETECTION_MODEL": name}
    return env, "/classify-image" if classifier else "/detect-objects"


def cold_start_without_cache(name: str, models_dir: Path) -> float:
    """Seconds from start to ready on OpenVINO with an empty converted-model cache: a MODELS_DIR
    of links to the same weight files (the real one's cache is left alone)."""
    import tempfile

    from models.builtins import CATALOG

    with tempfile.TemporaryDirectory() as scratch:
        weights = CATALOG[name].path(models_dir).resolve()
        link = CATALOG[name].path(Path(scratch))
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(weights)
        env, _ = service_env(name, Path(scratch), "openvino")
        server = Server([sys.executable, "app.py"], env, "/ready")
        server.stop()
        return server.ready_seconds


def measure_model(name: str, runtime: str, args, images: dict[str, bytes], levels: list[int]) -> dict:
    """On one runtime: raw in-process cost, then the service as deployed; on TensorFlow/torch
    also the naive app (unless --no-naive); on OpenVINO also a cold start with no cache (the
    service's own start follows the raw run, which filled the cache)."""
    raw, device = raw_cost_alone(name, args.models_dir, list(images), args.repeat, runtime)
    entry = {"runtime": runtime, "raw": raw, "device": device}
    env, path = service_env(name, args.models_dir, runtime)
    server = Server([sys.executable, "app.py"], env, "/ready")
    try:
        entry["service"] = measure_server(server, path, images, levels, args.seconds)
    finally:
        server.stop()
    if runtime == "openvino":
        entry["cold_start_no_cache_seconds"] = cold_start_without_cache(name, args.models_dir)
    elif not args.no_naive:
        naive = Server([sys.executable, "-m", "bench.naive_app"],
                       {"BENCH_MODEL": name, "MODELS_DIR": str(args.models_dir)}, "/ready")
        try:
            entry["naive"] = measure_server(naive, "/predict", images, levels, args.seconds)
        finally:
            naive.stop()
    return entry


def network_input_shape(name: str, models_dir: Path) -> tuple[int, ...] | None:
    """The one-image input shape raw_cost times the network at (none for RetinaNet, whose
    network is not timed alone)."""
    from detectors.imageai_yolo import YOLO_INPUT
    from registry import TASKS, create_model

    if name in TASKS["classification"].builtins:
        side = create_model("classification", name, models_dir, download=False).side
        return (1, side, side, 3)
    if create_model("detection", name, models_dir, download=False).model_type == "RetinaNet":
        return None
    return (1, 3, YOLO_INPUT, YOLO_INPUT)


NETWORK_TIME = ("compiled_batch1_ms", "forward_ms")   # raw_cost's network-alone timings


def add_compute(report: dict, names: list[str], models_dir: Path) -> None:
    """The machine's measured convolution rate (bench/compute.py) and, per model, its network's
    GFLOP and the GFLOP/s each runtime's network timing achieved."""
    from bench.compute import conv_rate, network_gflop, served_entry

    threads = service_options().threads
    try:
        report["compute"] = {"threads": threads, "conv_gflops_per_s": conv_rate(threads)}
    except Exception as exc:   # a side measurement: the run's results are kept without it
        report["compute"] = {"threads": threads, "error": f"{type(exc).__name__}: {exc}"}
        return
    for name in names:
        try:
            shape, xml = network_input_shape(name, models_dir), served_entry(models_dir, name)
            gflop = None if shape is None or xml is None else network_gflop(xml, shape)
        except Exception as exc:
            report["compute"].setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
            continue
        if gflop is None:
            continue
        for key, entry in report["models"].items():
            if key.rpartition(".")[0] != name:
                continue
            entry["network"] = {"gflop": gflop, "input_shape": list(shape), "counted_on": xml.name}
            for raw in entry["raw"].values():
                timing = next((raw[k] for k in NETWORK_TIME if raw.get(k)), None)
                if timing:
                    raw["network_gflops_per_s"] = gflop / timing * 1e3


def add_weight_arguments(parser: argparse.ArgumentParser) -> None:
    """--models-dir and --random-weights, as every benchmark that loads built-in models takes them."""
    parser.add_argument("--models-dir", type=Path, default=Path(os.environ.get("MODELS_DIR", "models")))
    parser.add_argument("--random-weights", action="store_true",
                        help="write random weights of the real architectures into --models-dir where missing; "
                             "detectors calibrated to ~15 candidates per photo, as real weights give")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--raw-cost"]:   # one model's raw cost, in a process of its own (raw_cost_alone)
        return _raw_cost_child(*argv[1:6])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet,tiny_yolo")
    add_weight_arguments(parser)
    parser.add_argument("--worst-case", action="store_true",
                        help="with --random-weights: plain random detector weights (thousands of candidates "
                             "per image, NMS-bound); label such runs as the worst case")
    parser.add_argument("--runtimes", default="tensorflow,openvino",
                        help="INFERENCE_RUNTIME values measured side by side (tensorflow: each model's framework)")
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--seconds", type=float, default=15.0, help="per load level")
    parser.add_argument("--repeat", type=int, default=10, help="repetitions for raw costs")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--sizes", default="640x480,12MP", help="the benchmark images to send (640x480, 12MP)")
    parser.add_argument("--smoke", action="store_true", help="seconds-long run for CI")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.smoke:
        args.concurrency, args.seconds, args.repeat = "1,2", 1.0, 2
    levels = [int(c) for c in args.concurrency.split(",")]
    names = [n.strip() for n in args.models.split(",") if n.strip()]

    written = {}  # what this run wrote; files already there are reported as such
    if args.random_weights:
        from bench.random_weights import CALIBRATED_CANDIDATES, write_missing
        kind = ("random, plain (worst case)" if args.worst_case
                else f"random, calibrated to ~{CALIBRATED_CANDIDATES} candidates")
        candidates = None if args.worst_case else CALIBRATED_CANDIDATES
        written = {name: kind for name in write_missing(names, args.models_dir, candidates)}

    images = bench_images()
    sizes = ["640x480"] if args.smoke else [size.strip() for size in args.sizes.split(",") if size.strip()]
    if set(sizes) - set(images):
        parser.error(f"--sizes: choose from {', '.join(images)}")
    images = {size: images[size] for size in sizes}
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "load_average_at_start": os.getloadavg(),
              "device": describe_device(),
              "settings": {k: os.environ[k] for k in ("WORKERS", "INFERENCE_CONCURRENCY", "MAX_QUEUE", "MAX_BATCH_SIZE",
                                                       "BATCH_TIMEOUT_MS", "INTRA_OP_THREADS") if k in os.environ},
              "weights": str(args.models_dir),
              "weights_written": written,
              "models": {}}
    for name in names:
        for runtime in args.runtimes.split(","):
            print(f"measuring {name} on {runtime} ...", flush=True)
            report["models"][f"{name}.{runtime}"] = measure_model(name, runtime, args, images, levels)
    add_compute(report, names, args.models_dir)
    report["comparison"] = compare(report)
    report["load_average_at_end"] = os.getloadavg()
    return publish(report, args.json, print_report)


if __name__ == "__main__":
    sys.exit(main())
