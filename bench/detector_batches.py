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


def unpaired(found, reference):
    """Greedy one-to-one pairing of same-label (label, score, box) detections whose boxes are
    within 1 px and scores within 1e-3; returns what is left unpaired on each side."""
    pool: dict[str, list] = {}
    for label, score, box in reference:
        pool.setdefault(label, []).append((score, box))
    left = []
    for label, score, box in found:
        candidates = pool.get(label, [])
        for i, (other_score, other_box) in enumerate(candidates):
            if abs(other_score - score) <= 1e-3 and max(abs(a - b) for a, b in zip(box, other_box)) <= 1:
                del candidates[i]
                break
        else:
            left.append((label, score, box))
    return left, [(label, *d) for label, ds in pool.items() for d in ds]


def same_detections(found, reference) -> bool:
    """Detection lists equal one to one, in any order (see `unpaired`)."""
    as_tuples = [[(d.label, d.score, d.box) for d in ds] for ds in (found, reference)]
    return unpaired(*as_tuples) == ([], [])


def measure(name: str, models_dir: Path, repeat: int) -> dict:
    from bench.random_weights import sample_image
    from contract import FRAMEWORK, InferenceOptions
    from detectors.imageai_yolo import letterboxed
    from registry import create_model
    # The framework's path: torch, on a GPU where it sees one.
    detector = create_model("detection", name, models_dir, download=False, options=InferenceOptions(runtime=FRAMEWORK))
    detector.load()
    # On torch the network may sit on a GPU: its timings wait for the device's queued work.
    sync = torch_device(detector._detector._ObjectDetection__model)[1] if detector.runtime == "torch" else (lambda: None)
    images = [sample_image(640, 480, seed) for seed in range(6)] + [sample_image(300, 500, 9), sample_image(640, 480, 10)]
    min_score = 0.05 if name == "retina" else 0.3
    together = detector.predict(images, min_score)
    alone = [detector.predict([image], min_score)[0] for image in images]
    entry = {"device": detector.device, "runtime": detector.runtime, "batchable": detector.batchable,
             "detections_per_image": [len(found) for found in alone],
             "batch_equals_alone": all(same_detections(a, b) for a, b in zip(together, alone)),
             "predict_batch1_ms": 1e3 * timed(lambda: detector.predict(images[:1], min_score), repeat, sync),
             "predict_batch8_ms": 1e3 * timed(lambda: detector.predict(images, min_score), max(3, repeat // 4), sync)}
    if name != "retina":
        one = letterboxed(np.asarray(images[0]))
        eight = np.concatenate([letterboxed(np.asarray(image)) for image in images])
        entry["forward_batch1_ms"] = 1e3 * timed(lambda: detector._forward(one), repeat, sync)
        entry["forward_batch8_ms"] = 1e3 * timed(lambda: detector._forward(eight), max(3, repeat // 4), sync)
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
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if args.random_weights:
        from bench.random_weights import write_missing
        write_missing(names, args.models_dir)
    report = {"device": describe_device(), "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "models": {name: measure(name, args.models_dir, args.repeat) for name in names}}
    return publish(report, args.json)


if __name__ == "__main__":
    sys.exit(main())
