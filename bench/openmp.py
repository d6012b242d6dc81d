"""torch's OpenMP spin against the detectors' speed:
`python -m bench.openmp [--models tiny_yolo,yolo] [--runtimes openvino,tensorflow] [--json out.json]`.

Each model, runtime and setting runs in a process of its own (libgomp reads them when torch
loads it): libgomp's default (asked for with an empty OMP_WAIT_POLICY: present, so the service
sets nothing, and libgomp reads an empty value as unset), the service's default for the
runtime (neither variable set: on OpenVINO it sets GOMP_SPINCOUNT, on torch it keeps libgomp's
default; runtimes/frameworks.py) and PASSIVE. Reported:
predict() on the 640x480 benchmark photo (median of --repeat calls) and, for YOLO, the forward
step (network and detection layers) alone.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

SETTINGS = {"libgomp default": {"OMP_WAIT_POLICY": ""}, "service default": {},
            "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}}


def child(name: str, runtime: str, repeat: int, models_dir: Path) -> dict:
    import numpy as np

    from bench.__main__ import bench_images, load_model, timed
    from dataplane.images import decode_image

    model = load_model(name, models_dir, runtime)
    image = decode_image(bench_images()["640x480"]).image
    result = {"predict_ms": timed(lambda: model.predict([image], 0.3), repeat) * 1e3}
    if model.model_type != "RetinaNet":
        from detectors.imageai_yolo import letterboxed

        inputs = letterboxed(np.asarray(image))
        result["forward_ms"] = timed(lambda: model._forward(inputs), repeat) * 1e3
    return result


def measure(name: str, runtime: str, setting: dict, repeat: int, models_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | setting
    from bench.__main__ import in_own_process

    return in_own_process(["bench.openmp", "--child", name, runtime, str(repeat), str(models_dir)],
                          f"{name} on {runtime}", env, timeout=1800)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        name, runtime, repeat, models_dir = argv[1:5]
        print(json.dumps(child(name, runtime, int(repeat), Path(models_dir))))
        return 0
    from bench.__main__ import add_weight_arguments, publish

    parser = argparse.ArgumentParser(prog="python -m bench.openmp", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny_yolo,yolo")
    parser.add_argument("--runtimes", default="openvino,tensorflow",
                        help="INFERENCE_RUNTIME values (tensorflow: each model's framework, torch here)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path)
    add_weight_arguments(parser)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if args.random_weights:
        from bench.random_weights import CALIBRATED_CANDIDATES, write_missing
        write_missing(names, args.models_dir, CALIBRATED_CANDIDATES)
    report = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "repeat": args.repeat,
              "load_average_at_start": os.getloadavg(), "models": {}}
    for name in names:
        for runtime in args.runtimes.split(","):
            report["models"][f"{name}.{runtime}"] = {label: measure(name, runtime, setting, args.repeat, args.models_dir)
                                                     for label, setting in SETTINGS.items()}
    report["load_average_at_end"] = os.getloadavg()
    return publish(report, args.json, show)


def show(report: dict) -> None:
    print(f"started {report['started']}, median of {report['repeat']} calls (ms)")
    for key, runs in report["models"].items():
        print(f"{key}: " + "; ".join(f"{policy}: " + ", ".join(f"{k} {v:.1f}" for k, v in values.items())
                                     for policy, values in runs.items()))


if __name__ == "__main__":
    sys.exit(main())
