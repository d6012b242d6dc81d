"""`python -m bench.deepstack`: camera frames through /v1/vision/detection as Frigate's
DeepStack detector sends them, one client, against Frigate's default 0.1 s request timeout.

Starts `python app.py` (one detector, preloaded, result cache off so every frame runs the
model), then posts 320x320 JPEG frames (Pillow's default quality, as Frigate saves them) with
`requests` on one keep-alive session: form field `api_key` empty, `files={"image": bytes}`.
Latencies are taken with a generous timeout so the slow tail is measured too; the report
counts how many would have missed Frigate's 0.1 s.

    python -m bench.deepstack --models-dir DIR --random-weights --requests 300 --json out.json
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from bench.__main__ import SHARED, Server, add_weight_arguments, publish

FRIGATE_TIMEOUT_S = 0.1   # frigate/detectors/plugins/deepstack.py: api_timeout default
FRIGATE_MAX_PREDICTIONS = 20   # its detections array: more rows at or above 0.4 and it fails
PHOTOS = ("darknet/dog.jpg", "darknet/person.jpg", "darknet/horses.jpg", "darknet/giraffe.jpg",
          "ultralytics/bus.jpg", "coral/pets.jpg")


def frames(size: int = 320) -> list[bytes]:
    """Square camera frames as JPEG bytes: the sample photos squeezed to size x size (generated
    scenes when ../shared is missing)."""
    from PIL import Image

    from bench.random_weights import sample_image

    images = [Image.open(SHARED / "images" / p).convert("RGB") for p in PHOTOS if (SHARED / "images" / p).exists()]
    images = images or [sample_image(640, 480, seed) for seed in range(len(PHOTOS))]
    out = []
    for image in images:
        with io.BytesIO() as buffer:
            image.resize((size, size), Image.BILINEAR).save(buffer, format="JPEG")
            out.append(buffer.getvalue())
    return out


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q / 100 * len(sorted_values)))]


def drive(url: str, jpegs: list[bytes], count: int, warmup: int) -> dict:
    """One client, one session, frames in turn; latency of every 200 answer in milliseconds."""
    import requests

    latencies, statuses, predictions, inference = [], {}, [], []
    with requests.Session() as session:
        for i in range(warmup + count):
            started = time.perf_counter()
            response = session.post(url, data={"api_key": ""}, files={"image": jpegs[i % len(jpegs)]}, timeout=30)
            elapsed = time.perf_counter() - started
            if i < warmup:
                continue
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                latencies.append(elapsed * 1000)
                answer = response.json()
                predictions.append(len(answer["predictions"]))
                inference.append(answer["inferenceMs"])
    latencies.sort()
    inference.sort()
    return {"requests": count, "statuses": {str(k): v for k, v in statuses.items()},
            "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99), "max_ms": latencies[-1], "mean_ms": statistics.fmean(latencies),
            # The model call alone, as the service reports it (inferenceMs): the rest is HTTP,
            # multipart, JPEG decoding and the answer.
            "inference_p50_ms": percentile(inference, 50), "inference_p99_ms": percentile(inference, 99),
            "over_frigate_timeout": sum(ms > FRIGATE_TIMEOUT_S * 1000 for ms in latencies),
            "predictions_per_frame_mean": statistics.fmean(predictions),
            "frames_over_frigate_max_predictions": sum(n > FRIGATE_MAX_PREDICTIONS for n in predictions)}


def weights_file(model: str, models_dir: Path, random_weights: bool) -> str:
    """What the run measures with: the file in models_dir, or (with --random-weights, when it is
    missing) the real architecture with random weights calibrated to about 15 candidates per
    photo, as real weights give (plain random weights pass thousands and time NMS instead)."""
    from models.builtins import CATALOG

    path = CATALOG[model].path(models_dir)
    if path.exists():
        return str(path)
    if not random_weights:
        raise SystemExit(f"{path} is missing: fill MODELS_DIR (python -m models.download {model}) or pass --random-weights")
    from bench.random_weights import CALIBRATED_CANDIDATES, write_weights
    write_weights(model, models_dir, candidates=CALIBRATED_CANDIDATES)
    return f"{path}: random weights of the real architecture, calibrated to ~{CALIBRATED_CANDIDATES} candidates per photo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.deepstack", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_yolo")
    add_weight_arguments(parser)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    weights = weights_file(args.model, args.models_dir, args.random_weights)
    env = {"OBJECT_DETECTION_ENABLED": "true", "OBJECT_DETECTION_MODEL": args.model,
           "IMAGE_CLASSIFICATION_ENABLED": "false", "MODELS_DIR": str(args.models_dir),
           "MODEL_DOWNLOAD": "false", "PRELOAD_MODELS": "true", "CACHE_MAXSIZE": "0"}
    server = Server([sys.executable, "app.py"], env, "/ready")
    load_before = os.getloadavg()[0]
    try:
        result = drive(f"http://127.0.0.1:{server.port}/v1/vision/detection", frames(), args.requests, args.warmup)
    finally:
        server.stop()
    report = {"command": " ".join(["python -m bench.deepstack", *(argv if argv is not None else sys.argv[1:])]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "model": args.model, "weights": weights, "frame": "320x320 JPEG", "clients": 1,
              "frigate_timeout_ms": FRIGATE_TIMEOUT_S * 1000, **result,
              # Other work on the machine shows here (this run alone adds about 1-2 on 2 CPUs).
              "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}}
    return publish(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
