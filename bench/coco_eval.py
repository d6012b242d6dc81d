"""Precision, recall and mAP@0.5 of a detector on images with YOLO-format labels.

    python -m bench.coco_eval MODELS_DIR/<name> IMAGES_DIR [--labels LABELS_DIR]
                              [--score 0.3] [--iou 0.5]

Labels are `class cx cy w h` per line, normalised, in LABELS_DIR with the image's relative
path and a .txt suffix (default: IMAGES_DIR with its `images` path part replaced by `labels`,
as in YOLO datasets). Class ids index the model's own labels file. Precision and recall count
detections at score >= --score; mAP@0.5 uses every detection (all-point interpolated AP per
class present in the ground truth).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}

# A detector for evaluation: (image path, minimum score) -> [(class id, score, (x1, y1, x2, y2))]
DetectFn = Callable[[Path, float], list[tuple[int, float, tuple[float, float, float, float]]]]


@dataclasses.dataclass
class Result:
    images: int
    ground_truth: int
    detections: int
    true_positives: int
    precision: float
    recall: float
    map50: float

    def lines(self) -> list[str]:
        return [f"images            {self.images}",
                f"ground-truth boxes {self.ground_truth}",
                f"detections        {self.detections}  (true positives {self.true_positives})",
                f"precision         {self.precision:.3f}",
                f"recall            {self.recall:.3f}",
                f"mAP@0.5           {self.map50:.3f}"]


def find_images(images_dir: Path) -> list[Path]:
    return sorted(p for p in Path(images_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def default_labels_dir(images_dir: Path) -> Path:
    parts = list(Path(images_dir).parts)
    if "images" in parts:
        parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
        return Path(*parts)
    return Path(images_dir)


def read_ground_truth(label_file: Path, width: int, height: int) -> list[tuple[int, np.ndarray]]:
    boxes = []
    if label_file.is_file():
        for line in label_file.read_text().splitlines():
            fields = line.split()
            if len(fields) < 5:
                continue
            cls, cx, cy, w, h = int(fields[0]), *map(float, fields[1:5])
            boxes.append((cls, np.array([(cx - w / 2) * width, (cy - h / 2) * height,
                                         (cx + w / 2) * width, (cy + h / 2) * height])))
    return boxes


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    if len(others) == 0:
        return np.zeros(0)
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area(box) + area(others) - inter, 1e-9)


def match(detections, truths, iou_threshold: float) -> list[bool]:
    """Greedy, best score first: a detection is a true positive when it takes an unmatched
    ground-truth box of its class with IoU >= threshold."""
    used = [False] * len(truths)
    flags = []
    for cls, _, box in sorted(detections, key=lambda d: -d[1]):
        candidates = [i for i, (c, _) in enumerate(truths) if c == cls and not used[i]]
        if candidates:
            overlaps = iou(np.asarray(box, dtype=np.float64), np.stack([truths[i][1] for i in candidates]))
            best = int(overlaps.argmax())
            if overlaps[best] >= iou_threshold:
                used[candidates[best]] = True
                flags.append(True)
                continue
        flags.append(False)
    return flags


def average_precision(scores: list[float], hits: list[bool], positives: int) -> float:
    if positives == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits_sorted = np.asarray(hits, dtype=np.float64)[order]
    tp = np.cumsum(hits_sorted)
    fp = np.cumsum(1 - hits_sorted)
    recall = np.concatenate([[0.0], tp / positives, [1.0]])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1e-9), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def evaluate(detect: DetectFn, images: Iterable[Path], images_dir: Path, labels_dir: Path,
             score: float = 0.3, iou_threshold: float = 0.5) -> Result:
    from PIL import Image

    images = list(images)
    total_gt = n_det = n_tp = 0
    per_class: dict[int, tuple[list[float], list[bool]]] = {}
    gt_per_class: dict[int, int] = {}
    for path in images:
        with Image.open(path) as img:
            width, height = img.size
        label_file = (labels_dir / path.relative_to(images_dir)).with_suffix(".txt")
        truths = read_ground_truth(label_file, width, height)
        total_gt += len(truths)
        for cls, _ in truths:
            gt_per_class[cls] = gt_per_class.get(cls, 0) + 1
        detections = detect(path, 0.001)
        flags = match(detections, truths, iou_threshold)
        for (cls, s, _), hit in zip(sorted(detections, key=lambda d: -d[1]), flags):
            scores, hits = per_class.setdefault(cls, ([], []))
            scores.append(s)
            hits.append(hit)
        confident = [d for d in detections if d[1] >= score]
        confident_flags = match(confident, truths, iou_threshold)
        n_det += len(confident)
        n_tp += sum(confident_flags)
    aps = [average_precision(*per_class.get(cls, ([], [])), positives) for cls, positives in gt_per_class.items()]
    return Result(images=len(images), ground_truth=total_gt, detections=n_det, true_positives=n_tp,
                  precision=n_tp / n_det if n_det else 0.0, recall=n_tp / total_gt if total_gt else 0.0,
                  map50=float(np.mean(aps)) if aps else 0.0)


def folder_detector(folder: Path) -> DetectFn:
    """A DetectFn running a model folder in-process with the service's own code."""
    from dataplane.images import decode_image
    from detectors.folder import FolderDetector
    from models.folder_spec import load_spec

    detector = FolderDetector(load_spec(folder))
    detector.load()
    index = {label: i for i, label in enumerate(detector.labels)}

    def detect(path: Path, min_score: float):
        image = decode_image(path.read_bytes()).image
        return [(index[d.label], d.score, d.box) for d in detector.predict([image], min_score)[0]]
    return detect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coco_eval", description=__doc__.splitlines()[0])
    parser.add_argument("model_folder", type=Path)
    parser.add_argument("images_dir", type=Path)
    parser.add_argument("--labels", type=Path, default=None, help="YOLO labels folder")
    parser.add_argument("--score", type=float, default=0.3)
    parser.add_argument("--iou", type=float, default=0.5)
    args = parser.parse_args(argv)
    images = find_images(args.images_dir)
    if not images:
        parser.error(f"no images in {args.images_dir}")
    result = evaluate(folder_detector(args.model_folder), images, args.images_dir,
                      args.labels or default_labels_dir(args.images_dir), args.score, args.iou)
    print(f"model {args.model_folder.name} on {args.images_dir} (score >= {args.score}, IoU >= {args.iou})")
    print("\n".join(result.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
