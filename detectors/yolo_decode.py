"""Decoding YOLO-style outputs (yolov8: cx, cy, w, h + class scores; yolov5: + objectness)
and class-wise non-maximum suppression, vectorised in numpy."""
from __future__ import annotations

import numpy as np


def decode(output: np.ndarray, layout: str, num_classes: int, box_units: str,
           input_size: tuple[int, int], min_score: float):
    """One image's raw output -> (boxes xyxy in model-input pixels, scores, class ids)."""
    rows = output
    width_wanted = 4 + num_classes if layout == "yolov8" else 5 + num_classes
    if rows.shape[-1] != width_wanted and rows.shape[0] == width_wanted:
        rows = rows.T  # [4+C, N] -> [N, 4+C]
    if layout == "yolov8":
        class_scores = rows[:, 4:]
    else:
        class_scores = rows[:, 5:] * rows[:, 4:5]
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(rows)), class_ids]
    keep = scores >= min_score
    rows, scores, class_ids = rows[keep], scores[keep], class_ids[keep]
    cx, cy, w, h = (rows[:, i].astype(np.float64) for i in range(4))
    if box_units == "normalized":
        height, width = input_size
        cx, w = cx * width, w * width
        cy, h = cy * height, h * height
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes, scores.astype(np.float64), class_ids


def nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
        max_detections: int = 300) -> np.ndarray:
    """Indices kept by greedy class-wise NMS, best first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    # Offset each class into its own region so one pass never suppresses across classes (the
    # span covers negative coordinates too: decoded boxes may lie past the input's edges).
    offset = class_ids[:, None].astype(np.float64) * (boxes.max() - boxes.min() + 1.0)
    shifted = boxes + offset
    areas = (shifted[:, 2] - shifted[:, 0]).clip(0) * (shifted[:, 3] - shifted[:, 1]).clip(0)
    order = np.argsort(-scores, kind="stable")
    kept = []
    while order.size and len(kept) < max_detections:
        best = order[0]
        kept.append(best)
        rest = order[1:]
        x1 = np.maximum(shifted[best, 0], shifted[rest, 0])
        y1 = np.maximum(shifted[best, 1], shifted[rest, 1])
        x2 = np.minimum(shifted[best, 2], shifted[rest, 2])
        y2 = np.minimum(shifted[best, 3], shifted[rest, 3])
        inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(kept, dtype=np.int64)
