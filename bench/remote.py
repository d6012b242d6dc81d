"""Remote inference engines against the local runtime, for the same model:
`python -m bench.remote [--requests 200] [--bursts 20] [--json out.json]`.

A real engine, KServe's model server (.venv-engine, tests/support/kserve_engine.py, created by
./run_tests.sh), hosts the uint8 MobileNetV2 from ../shared on loopback, once per protocol so
its own counters tell them apart. The service (`python app.py`, models preloaded, cache off)
serves the local folder and its remote twins: kserve_v2 with binary tensors, kserve_v2 with
JSON tensors, kserve_v2 over gRPC (raw tensors), and tfserving (KServe V1: JSON, no metadata). Measured:
- the model call alone, in-process: the local LiteRT runtime against each remote runtime, on
  the tensor the service builds from a 640x480 JPEG (median; calls interleaved);
- the service at one client: p50/p95 of /v2/classify for each model, requests interleaved
  round-robin so that drift in the machine's load hits every model alike;
- the engine's own time in predict (its request_predict_seconds metric), so the rest of a
  remote call is transport, encoding and the engine's request handling;
- micro-batching: bursts of 8 simultaneous requests to the binary V2 model and to the gRPC
  one; the engine's predict counter says how many remote calls each burst became;
- the same model calls for the YOLOv5n ONNX detector (a 4.9 MB float32 input, an 8.6 MB
  output), where JSON and binary tensors differ most (--detector-repeat 0 skips it).
"""
from __future__ import annotations

import argparse
import http.client
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

from bench.__main__ import SHARED, Server, bench_images, multipart, publish

MODEL_FILE = "models/classify/mobilenet_v2_1.0_224_quant.tflite"
DETECTOR_FILE = "models/detect/yolov5n_640.onnx"
LOCAL, LOCAL_DETECTOR = "mobilenet_v2_quant", "yolov5n_onnx"
RAW_PIXELS = {"resize": "stretch", "mean": [0, 0, 0], "std": [1, 1, 1]}  # the engine takes uint8 pixels
# Remote folder → (engine model name, model.json's remote fields)
REMOTES = {
    "remote_v2_binary": ("mb_binary", {"format": "kserve_v2", "encoding": "binary", "input": RAW_PIXELS}),
    "remote_v2_json": ("mb_json", {"format": "kserve_v2", "encoding": "json", "input": RAW_PIXELS}),
    "remote_v2_grpc": ("mb_grpc", {"format": "kserve_v2", "transport": "grpc", "input": RAW_PIXELS}),
    "remote_v1": ("mb_v1", {"format": "tfserving", "input": {**RAW_PIXELS, "size": [224, 224], "layout": "NHWC"}}),
}
DETECTORS = {
    "yolo_v2_binary": ("yolo_binary", {"format": "kserve_v2", "encoding": "binary"}),
    "yolo_v2_json": ("yolo_json", {"format": "kserve_v2", "encoding": "json"}),
    "yolo_v2_grpc": ("yolo_grpc", {"format": "kserve_v2", "transport": "grpc"}),
    "yolo_v1": ("yolo_v1", {"format": "tfserving", "timeout_s": 300,
                            "input": {"size": [640, 640], "resize": "letterbox", "mean": [0, 0, 0],
                                      "std": [255, 255, 255], "layout": "NCHW"}}),
}


def build_folders(models_dir: Path, engine) -> None:
    """The local folders and their remote twins; `"transport": "grpc"` marks those that reach
    the engine over gRPC."""
    from tests.support.engines import remote_folder
    from tests.support.shared_models import build_folder

    for local, remotes in ((LOCAL, REMOTES), (LOCAL_DETECTOR, DETECTORS)):
        build_folder(models_dir, local)
        for name, (served, fields) in remotes.items():
            fields = dict(fields)
            url = engine.grpc_url if fields.pop("transport", "http") == "grpc" else engine.url
            remote_folder(models_dir, name, local, url=url, model=served, **fields)


def model_calls(models_dir: Path, jpeg: bytes, repeat: int, task: str = "classification",
                names: tuple[str, ...] = (LOCAL, *REMOTES)) -> tuple[dict, dict]:
    """Median ms of runtime.run on each model's own input tensor, calls interleaved: wall time,
    and the calling thread's CPU time (for a remote model: encoding, HTTP and decoding, the
    service's own cost of a remote call)."""
    from dataplane.images import decode_image
    from registry import create_model

    image = decode_image(jpeg).image
    runs = {}
    for name in names:
        model = create_model(task, name, models_dir, download=False)
        model.load()
        batch = model.inputs([image])[0]
        runs[name] = (model.tensors, batch)
    wall, cpu = {name: [] for name in runs}, {name: [] for name in runs}
    for _ in range(repeat + 1):
        for name, (runtime, batch) in runs.items():
            started, started_cpu = time.perf_counter(), time.thread_time()
            runtime.run(batch)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.thread_time() - started_cpu)
    median = lambda samples: {name: statistics.median(values[1:]) * 1e3 for name, values in samples.items()}
    return median(wall), median(cpu)


def one_client(port: int, jpeg: bytes, requests: int) -> dict:
    """p50/p95 ms per model at one client, requests interleaved round-robin."""
    content_type, body = multipart(jpeg)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    samples: dict[str, list[float]] = {name: [] for name in (LOCAL, *REMOTES)}
    for i in range(requests + 2):
        for name in samples:
            started = time.perf_counter()
            conn.request("POST", f"/v2/classify?model={name}", body=body, headers={"Content-Type": content_type})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{name} answered {response.status}")
            if i >= 2:  # two warm-up rounds
                samples[name].append(time.perf_counter() - started)
    conn.close()
    return {name: {"p50_ms": _pct(v, 50), "p95_ms": _pct(v, 95), "n": len(v)} for name, v in samples.items()}


def bursts(port: int, jpeg: bytes, engine, count: int, model: str = "remote_v2_binary") -> dict:
    """Bursts of 8 simultaneous requests; remote calls per burst by the engine's own counter."""
    content_type, body = multipart(jpeg)
    served = REMOTES[model][0]
    calls, latencies, statuses, spreads = [], [], [], []
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(8)]
    for _ in range(count):
        barrier = threading.Barrier(8)
        before = engine.calls(served)
        sent: list[float] = []

        def client(conn, barrier=barrier, sent=sent):
            barrier.wait()
            started = time.perf_counter()
            conn.request("POST", f"/v2/classify?model={model}", body=body, headers={"Content-Type": content_type})
            sent.append(time.perf_counter())   # the whole request is written
            response = conn.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
            statuses.append(response.status)

        threads = [threading.Thread(target=client, args=(c,)) for c in connections]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        calls.append(engine.calls(served) - before)
        spreads.append((max(sent) - min(sent)) * 1e3)
    for conn in connections:
        conn.close()
    return {"bursts": count, "requests_ok": statuses.count(200), "requests": len(statuses),
            "calls_per_burst": calls, "max_calls_per_burst": max(calls), "mean_calls_per_burst": statistics.mean(calls),
            # ms between the first and the last of a burst's 8 requests being fully sent: how
            # simultaneous the load generator managed to make them
            "send_spread_ms": spreads,
            "p50_ms": _pct(latencies, 50), "p95_ms": _pct(latencies, 95)}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1e3


def run(args) -> dict:
    from tests.support.engines import ENGINE_PYTHON, Engine

    if not ENGINE_PYTHON.exists() or not SHARED.is_dir():
        raise SystemExit(f"needs {ENGINE_PYTHON} (./run_tests.sh creates it) and {SHARED}")
    jpeg = bench_images()["640x480"]
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
        tmp_dir = Path(tmp)
        served = {name: MODEL_FILE for name, _ in REMOTES.values()}
        served.update({name: DETECTOR_FILE for name, _ in DETECTORS.values()})
        engine = Engine(served, tmp_dir / "engine.log").start()
        try:
            models_dir = tmp_dir / "models"
            build_folders(models_dir, engine)
            calls, cpu = model_calls(models_dir, jpeg, args.repeat)
            report = {"calls_ms": calls, "calls_thread_cpu_ms": cpu}
            if args.detector_repeat:
                calls, cpu = model_calls(models_dir, jpeg, args.detector_repeat, "detection",
                                         (LOCAL_DETECTOR, *DETECTORS))
                report["detector_calls_ms"], report["detector_calls_thread_cpu_ms"] = calls, cpu
            env = {"IMAGE_CLASSIFICATION_ENABLED": "true", "IMAGE_CLASSIFICATION_MODEL": ",".join((LOCAL, *REMOTES)),
                   "MODELS_DIR": str(models_dir), "PRELOAD_MODELS": "true", "CACHE_MAXSIZE": "0",
                   "INFERENCE_CONCURRENCY": "8", "MAX_QUEUE": "16", "MAX_BATCH_SIZE": "8", "OBJECT_DETECTION_ENABLED": "false",
                   "BATCH_TIMEOUT_MS": str(args.batch_timeout_ms)}
            server = Server([sys.executable, "app.py"], env, "/ready")
            try:
                engine_before = {served: engine.predict_seconds(served) for served, _ in REMOTES.values()}
                report["one_client"] = one_client(server.port, jpeg, args.requests)
                report["engine_predict_ms"] = {}
                for name, (served, _) in REMOTES.items():
                    calls, seconds = engine.predict_seconds(served)
                    calls0, seconds0 = engine_before[served]
                    report["engine_predict_ms"][name] = (seconds - seconds0) / max(1.0, calls - calls0) * 1e3
                report["bursts_of_8"] = bursts(server.port, jpeg, engine, args.bursts)
                report["bursts_of_8_grpc"] = bursts(server.port, jpeg, engine, args.bursts, "remote_v2_grpc")
            finally:
                server.stop()
        finally:
            engine.stop()
    report["machine"] = {"platform": platform.platform(), "cpus": len(os.sched_getaffinity(0)),
                         "python": platform.python_version(), "date": date.today().isoformat()}
    report["settings"] = {"BATCH_TIMEOUT_MS": args.batch_timeout_ms, "MAX_BATCH_SIZE": 8, "INFERENCE_CONCURRENCY": 8}
    report["command"] = "python -m bench.remote " + " ".join(sys.argv[1:])
    return report


def print_report(report: dict) -> None:
    calls, served, engine = report["calls_ms"], report["one_client"], report["engine_predict_ms"]
    local_call, local_p50 = calls[LOCAL], served[LOCAL]["p50_ms"]
    cpu = report["calls_thread_cpu_ms"]
    print(f"{'model':<18} {'call ms':>8} {'cpu ms':>7} {'engine ms':>9} {'p50 ms':>7} {'p95 ms':>7} {'p50 - local':>11}")
    for name in (LOCAL, *REMOTES):
        print(f"{name:<18} {calls[name]:8.1f} {cpu[name]:7.1f} {engine.get(name, local_call):9.1f} "
              f"{served[name]['p50_ms']:7.1f} {served[name]['p95_ms']:7.1f} {served[name]['p50_ms'] - local_p50:+11.1f}")
    if "detector_calls_ms" in report:
        calls, cpu = report["detector_calls_ms"], report["detector_calls_thread_cpu_ms"]
        print(f"{'detector':<18} {'call ms':>8} {'cpu ms':>7}")
        for name in calls:
            print(f"{name:<18} {calls[name]:8.1f} {cpu[name]:7.1f}")
    for key, label in (("bursts_of_8", "binary V2"), ("bursts_of_8_grpc", "gRPC")):
        b = report[key]
        print(f"bursts of 8 ({b['bursts']}, {label}): remote calls per burst max {b['max_calls_per_burst']}, "
              f"mean {b['mean_calls_per_burst']:.2f}; {b['requests_ok']}/{b['requests']} ok; p50 {b['p50_ms']:.1f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.remote", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per model at one client")
    parser.add_argument("--repeat", type=int, default=100, help="in-process calls per model")
    parser.add_argument("--bursts", type=int, default=20, help="bursts of 8 simultaneous requests")
    parser.add_argument("--detector-repeat", type=int, default=10, help="in-process calls per detector (0: none)")
    parser.add_argument("--batch-timeout-ms", type=int, default=5,
                        help="the service's BATCH_TIMEOUT_MS (default: the service's own default)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    report = run(args)
    return publish(report, args.json, print_report)


if __name__ == "__main__":
    sys.exit(main())
