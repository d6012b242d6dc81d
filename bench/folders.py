"""Users' model folders on their format's runtime (LiteRT, ONNX Runtime) beside OpenVINO:

    python -m bench.folders MODELS_DIR/<name> [...] --images a.jpg b.jpg [--repeat 20] [--json out.json]

Per folder and runtime: load seconds, the median model call on each image (preprocessing,
network, decoding: the folder model's own `predict`), and whether the answers agree: the same
top-5 labels and the largest probability difference (classifiers), or the same detections one
to one, boxes within 1 px and scores within 1e-3 (detectors). Where OpenVINO is faster with
the same answers it is the format's default (runtimes/formats.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.__main__ import publish, timed
from models.folder_spec import load_spec
from registry import TASKS, resolve
from runtimes.formats import FORMATS


def load(folder: Path, runtime: str):
    spec = dataclasses.replace(load_spec(folder), runtime=runtime)
    model = resolve(TASKS[spec.task].folder_factory)(spec)
    started = time.perf_counter()
    model.load()
    return model, time.perf_counter() - started


def answer(model, image):
    if model.task == "classification":
        return model.predict([image])[0]
    return [(d.label, d.score, d.box) for d in model.predict([image], 0.25)[0]]


def agreement(task: str, got, reference) -> dict:
    if task == "classification":
        return {"same_top5": bool((np.argsort(-got)[:5] == np.argsort(-reference)[:5]).all()),
                "max_probability_difference": float(np.abs(got - reference).max())}
    left = list(reference)
    for label, score, box in got:
        match = next((r for r in left if r[0] == label and abs(r[1] - score) <= 1e-3
                      and max(abs(a - b) for a, b in zip(r[2], box)) <= 1), None)
        if match is not None:
            left.remove(match)
    unmatched = len(left) + len(got) - (len(reference) - len(left))
    return {"detections": len(reference), "unmatched": unmatched, "same": unmatched == 0,
            "max_score_difference": _max_score_difference(got, reference)}


def _max_score_difference(got, reference) -> float | None:
    pairs = [(a[1], b[1]) for a in got for b in reference if a[0] == b[0]
             and max(abs(x - y) for x, y in zip(a[2], b[2])) <= 1]
    return max((abs(x - y) for x, y in pairs), default=None)


def measure(folder: Path, images: list[Path], repeat: int) -> dict:
    spec = load_spec(folder)
    result = {"format": spec.format, "runtimes": {}}
    photos = {p.name: Image.open(p).convert("RGB") for p in images}
    answers = {}
    for runtime in FORMATS[spec.format].runtimes:
        model, seconds = load(folder, runtime)
        entry = {"in_use": model.runtime, "load_seconds": seconds, "call_ms": {}}
        for name, image in photos.items():
            entry["call_ms"][name] = timed(lambda m=model, i=image: answer(m, i), repeat) * 1e3
        answers[runtime] = {name: answer(model, image) for name, image in photos.items()}
        result["runtimes"][runtime] = entry
    reference_runtime, *others = FORMATS[spec.format].runtimes
    for runtime in others:
        result["runtimes"][runtime]["agreement"] = {
            name: agreement(spec.task, answers[runtime][name], answers[reference_runtime][name]) for name in photos}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.folders", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--images", nargs="+", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from runtimes import frameworks
    frameworks.require({frameworks.TORCH, frameworks.TENSORFLOW})
    report = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average_at_start": os.getloadavg(),
              "folders": {folder.name: measure(folder, args.images, args.repeat) for folder in args.folders}}
    report["load_average_at_end"] = os.getloadavg()
    return publish(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
