"""`python -m bench.detector_batches --models-dir DIR [--models tiny_yolo,yolo,retina]`: each
built-in detector on its framework's device (a GPU where torch sees one), a micro-batch of 8
images against each image alone (box for box: same labels, boxes within 1 px, scores within
1e-3), and the cost of predict() and of the network's forward pass at batch 1 and 8, timed
with the device synchronised. Needs only torch, torchvision and imageai (a GPU host may have
no TensorFlow or OpenVINO)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.__main__ import add_weight_arguments, describe_device, publish, timed, torch_device


def same_detections(found, reference) -> bool:
    if len(found) != len(reference):
        return False
    pool = list(reference)
    for d in found:
        for i, other in enumerate(pool):
            if (d.label == other.label and abs(d.score - other.score) <= 1e-3
                    and max(abs(a - b) for a, b in zip(d.box, other.box)) <= 1):
                del pool[i]
                break
        else:
            return False
    return True


def median_ms(function, repeat: int, sync) -> float:
    return 1e3 * timed(function, repeat, sync)


def measure(name: str, models_dir: Path, repeat: int) -> dict:
    import torch

    from bench.random_weights import sample_image
    from detectors.imageai_yolo import letterboxed
    from registry import create_model

    detector = create_model("detection", name, models_dir, download=False)
    detector.load()
    sync = torch_device(detector._detector._ObjectDetection__model)[1]
    images = [sample_image(640, 480, seed) for seed in range(6)] + [sample_image(300, 500, 9), sample_image(640, 480, 10)]
    min_score = 0.05 if name == "retina" else 0.3
    together = detector.predict(images, min_score)
    alone = [detector.predict([image], min_score)[0] for image in images]
    entry = {"device": detector.device, "runtime": detector.runtime, "batchable": detector.batchable,
             "detections_per_image": [len(found) for found in alone],
             "batch_equals_alone": all(same_detections(a, b) for a, b in zip(together, alone)),
             "predict_batch1_ms": median_ms(lambda: detector.predict(images[:1], min_score), repeat, sync),
             "predict_batch8_ms": median_ms(lambda: detector.predict(images, min_score), max(3, repeat // 4), sync)}
    if name != "retina":
        one = letterboxed(np.asarray(images[0]))
        eight = torch.cat([letterboxed(np.asarray(image)) for image in images])
        entry["forward_batch1_ms"] = median_ms(lambda: detector._forward(one), repeat, sync)
        entry["forward_batch8_ms"] = median_ms(lambda: detector._forward(eight), max(3, repeat // 4), sync)
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detector_batches", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny_yolo,yolo,retina")
    add_weight_arguments(parser)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from runtimes import frameworks

    frameworks.require({frameworks.TORCH})
    frameworks.set_inference("tensorflow", "f32")   # the framework's path: torch, on a GPU where it sees one
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if args.random_weights:
        from bench.random_weights import write_weights
        from models.weights import CATALOG
        for name in names:
            if not CATALOG[name].path(args.models_dir).exists():
                write_weights(name, args.models_dir, candidates=15)
    report = {"device": describe_device(), "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "models": {name: measure(name, args.models_dir, args.repeat) for name in names}}
    return publish(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
