"""`python -m bench.precision`: what INFERENCE_PRECISION=bf16 costs in answers and buys in time,
against f32, for the built-in classifiers on OpenVINO.

    python -m bench.precision --models mobilenet,resnet --models-dir DIR [--json out.json]

Per model: the sample photos of ../shared through the model's own predict on both precisions
(same top-1 count, mean top-5 overlap, largest probability difference), and the compiled
network's median call at batch 1 (30 calls after 3 warm-up calls). Needs a CPU with bfloat16
support for bf16 to be more than f32 (the report says which precision each compiled network uses).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.__main__ import add_weight_arguments, publish, timed
from bench.random_weights import object_photos


def measure(name: str, models_dir: Path, photos: list[Path]) -> dict:
    from contract import InferenceOptions
    from dataplane.images import decode_image
    from registry import create_model

    runs = {}
    for precision in ("f32", "bf16"):
        model = create_model("classification", name, models_dir, download=False,
                             options=InferenceOptions(precision=precision))
        model.load()
        images = [decode_image(p.read_bytes(), size_hint=model.input_size).image for p in photos]
        probabilities = np.stack([np.asarray(model.predict([image])[0]) for image in images])
        batch = model.to_array(images[:1])
        call = timed(lambda m=model, b=batch: m._infer(m._preprocess(b.copy())), 30)
        runs[precision] = (probabilities, call * 1e3, model.describe().get("precision"))
    f32, bf16 = runs["f32"][0], runs["bf16"][0]
    overlap = [len(set(np.argsort(-a)[:5]) & set(np.argsort(-b)[:5])) / 5 for a, b in zip(f32, bf16)]
    return {"photos": len(photos), "same_top1": int((f32.argmax(1) == bf16.argmax(1)).sum()),
            "top5_overlap_mean": round(float(np.mean(overlap)), 3),
            "max_probability_difference": round(float(np.abs(f32 - bf16).max()), 4),
            "f32_call_ms": round(runs["f32"][1], 2), "bf16_call_ms": round(runs["bf16"][1], 2),
            "precision_in_use": {"f32": runs["f32"][2], "bf16": runs["bf16"][2]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.precision", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet,resnet")
    add_weight_arguments(parser)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from runtimes import frameworks
    frameworks.require({frameworks.TORCH, frameworks.TENSORFLOW})
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if args.random_weights:
        from bench.random_weights import write_missing
        write_missing(names, args.models_dir)
    photos = object_photos()
    report = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "weights": str(args.models_dir),
              "models": {name: measure(name, args.models_dir, photos) for name in names}}
    return publish(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
