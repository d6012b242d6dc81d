"""Cold starts: `python -m bench.cold_start [--models ...] [--rounds 5] [--json out.json]`.

For each model, `python app.py` (PRELOAD_MODELS=true, cache off, one model) is started on its
framework (`INFERENCE_RUNTIME=tensorflow`: TensorFlow for the classifiers, torch for the
detectors), on OpenVINO with the converted-model cache warm (MODELS_DIR's own `.openvino`),
and, with --convert, on OpenVINO with an empty cache (a scratch MODELS_DIR linking the same
weights file). Each start is timed to `/ready` 200 and to the answer of its first request (a
640x480 JPEG, as a default deployment that loads models lazily meets its first client). The
variants take turns within each round, so a slow minute on a shared machine hits them alike;
the medians are reported. Weights: --models-dir, --random-weights as `python -m bench`.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.__main__ import Server, add_weight_arguments, bench_images, multipart, publish, service_env

VARIANTS = ("framework", "openvino", "openvino_convert")


def first_answer(server: Server, path: str, body: bytes, content_type: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"the first request answered {response.status}")
    finally:
        conn.close()
    return time.monotonic()


def runtime_in_use(server: Server, name: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", f"/models/{name}")
        return json.loads(conn.getresponse().read())["runtime"]
    finally:
        conn.close()


def start(name: str, variant: str, models_dir: Path, body: bytes, content_type: str) -> dict:
    """One start: seconds to /ready and to the first answer. Raises where the start did not
    run what the variant names (a GPU host keeps the framework; a read-only MODELS_DIR has no
    warm cache)."""
    from models.builtins import CATALOG

    with tempfile.TemporaryDirectory() as scratch:
        if variant == "openvino_convert":   # the same weights file, an empty converted-model cache
            link = CATALOG[name].path(Path(scratch))
            link.parent.mkdir(parents=True)
            link.symlink_to(CATALOG[name].path(models_dir).resolve())
            models_dir = Path(scratch)
        env, path = service_env(name, models_dir, "tensorflow" if variant == "framework" else "openvino")
        if variant == "openvino" and not list((models_dir / ".openvino").glob(f"{name}-*.json")):
            raise SystemExit(f"no converted-model cache entry for {name} in MODELS_DIR/.openvino: "
                             "the warm start cannot be measured (is MODELS_DIR writable?)")
        started = time.monotonic()
        server = Server([sys.executable, "app.py"], env, "/ready")
        try:
            answered = first_answer(server, path, body, content_type)
            runtime = runtime_in_use(server, name)
        finally:
            server.stop()
    if (runtime == "openvino") != (variant != "framework"):
        raise SystemExit(f"the {variant} start of {name} ran on {runtime}: nothing to compare")
    return {"ready_s": server.ready_seconds, "first_answer_s": answered - started, "runtime": runtime}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet,resnet,tiny_yolo,yolo,retina")
    add_weight_arguments(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--convert", action="store_true", help="also start with an empty converted-model cache")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if args.random_weights:
        from bench.random_weights import CALIBRATED_CANDIDATES, write_missing
        write_missing(names, args.models_dir, CALIBRATED_CANDIDATES)
    content_type, body = multipart(bench_images()["640x480"])
    variants = VARIANTS if args.convert else VARIANTS[:2]
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_average_at_start": os.getloadavg(),
              "rounds": args.rounds, "models": {}}
    for name in names:
        # Fill the converted-model cache first: the warm variant must find its entry.
        start(name, "openvino_fill", args.models_dir, body, content_type)
        runs: dict[str, list[dict]] = {variant: [] for variant in variants}
        for _ in range(args.rounds):
            for variant in variants:
                runs[variant].append(start(name, variant, args.models_dir, body, content_type))
        report["models"][name] = {
            variant: {"runs": found, **{f"median_{k}": statistics.median(run[k] for run in found)
                                        for k in ("ready_s", "first_answer_s")}}
            for variant, found in runs.items()}
    report["load_average_at_end"] = os.getloadavg()
    return publish(report, args.json, show)


def show(report: dict) -> None:
    print(f"machine: {report['machine']}; started {report['started']}; load average "
          f"{report['load_average_at_start']} at start, {report['load_average_at_end']} at end; "
          f"medians of {report['rounds']} starts (seconds)")
    print("| model | framework: ready / first answer | OpenVINO, cache warm | OpenVINO, empty cache | warm / framework |")
    print("|---|---|---|---|---|")
    for name, entry in report["models"].items():
        cells = [f"{entry[v]['median_ready_s']:.2f} / {entry[v]['median_first_answer_s']:.2f}" if v in entry else "-"
                 for v in VARIANTS]
        ratio = entry["openvino"]["median_ready_s"] / entry["framework"]["median_ready_s"]
        print(f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f} |")


if __name__ == "__main__":
    raise SystemExit(main())
