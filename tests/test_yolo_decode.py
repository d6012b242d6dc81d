"""detectors/yolo_decode.py directly: `nms` against a brute-force greedy class-wise reference,
across-class independence, empty input and max_detections; `decode` for both yolov8 output
orientations, yolov5 objectness, normalized box units and min_score."""
from __future__ import annotations

import numpy as np
import pytest

from detectors.yolo_decode import decode, nms


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_nms(boxes, scores, class_ids, threshold, max_detections=300) -> list[int]:
    """Greedy, best score first; a box is dropped when its IoU with a kept box of its own
    class is above the threshold."""
    kept: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda k: -scores[k]):
        if len(kept) == max_detections:
            break
        if all(class_ids[j] != class_ids[i] or iou(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def random_boxes(rng, count: int, extent: float = 100.0):
    xy = rng.uniform(0, extent, size=(count, 2))
    wh = rng.uniform(20, 60, size=(count, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.uniform(0, 1, size=count)
    return boxes, scores


def raw_rows(boxes_cxcywh, class_scores, objectness=None) -> np.ndarray:
    """[N, 4+C] (or [N, 5+C] with objectness) model output rows."""
    parts = [np.asarray(boxes_cxcywh, dtype=np.float32)]
    if objectness is not None:
        parts.append(np.asarray(objectness, dtype=np.float32)[:, None])
    parts.append(np.asarray(class_scores, dtype=np.float32))
    return np.concatenate(parts, axis=1)


# --- nms -------------------------------------------------------------------------------------

@pytest.mark.parametrize("threshold", [0.3, 0.45, 0.7])
def test_nms_matches_brute_force_reference(threshold):
    rng = np.random.default_rng(1234)
    boxes, scores = random_boxes(rng, 300)
    class_ids = rng.integers(0, 3, size=300)
    kept = nms(boxes, scores, class_ids, threshold)
    expected = reference_nms(boxes, scores, class_ids, threshold)
    assert kept.dtype == np.int64
    assert kept.tolist() == expected
    assert 0 < len(expected) < 300  # the case suppresses some boxes and keeps others
    assert np.all(np.diff(scores[kept]) <= 0), "not best first"


def test_nms_threshold_is_strict():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], dtype=np.float64)  # IoU exactly 0.5
    scores = np.array([0.9, 0.8])
    classes = np.array([0, 0])
    assert nms(boxes, scores, classes, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, classes, 0.49).tolist() == [0]


def test_nms_classes_never_suppress_each_other():
    box = [10, 10, 50, 50]
    boxes = np.array([box, box, box, [12, 12, 50, 50]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    class_ids = np.array([0, 1, 2, 0])
    assert nms(boxes, scores, class_ids, 0.5).tolist() == [0, 1, 2]


def test_nms_classes_never_suppress_each_other_with_negative_coordinates():
    boxes = np.array([[-100, -100, 10, 10], [-100, -100, 10, 10]], dtype=np.float64)
    scores = np.array([0.9, 0.8])
    class_ids = np.array([0, 1])
    assert nms(boxes, scores, class_ids, 0.5).tolist() == [0, 1]


def test_nms_empty_input():
    kept = nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64), 0.5)
    assert kept.dtype == np.int64 and kept.shape == (0,)


def test_nms_max_detections_caps_the_output():
    rng = np.random.default_rng(7)
    boxes, scores = random_boxes(rng, 100, extent=2000.0)
    class_ids = rng.integers(0, 3, size=100)
    full = nms(boxes, scores, class_ids, 0.5)
    assert len(full) > 10
    capped = nms(boxes, scores, class_ids, 0.5, max_detections=10)
    assert capped.tolist() == full[:10].tolist()
    assert capped.tolist() == reference_nms(boxes, scores, class_ids, 0.5, max_detections=10)
    assert nms(boxes, scores, class_ids, 0.5, max_detections=1).tolist() == [int(np.argmax(scores))]


# --- decode ----------------------------------------------------------------------------------

def test_decode_yolov8_both_orientations_agree():
    rng = np.random.default_rng(5)
    count, classes = 50, 3
    cxcywh = np.concatenate([rng.uniform(50, 500, (count, 2)), rng.uniform(4, 80, (count, 2))], axis=1)
    rows = raw_rows(cxcywh, rng.uniform(0, 1, (count, classes)))
    boxes, scores, class_ids = decode(rows, "yolov8", classes, "pixels", (640, 640), 0.3)
    boxes_t, scores_t, class_ids_t = decode(np.ascontiguousarray(rows.T), "yolov8", classes, "pixels",
                                            (640, 640), 0.3)
    assert 0 < len(boxes) < count
    np.testing.assert_array_equal(boxes, boxes_t)
    np.testing.assert_array_equal(scores, scores_t)
    np.testing.assert_array_equal(class_ids, class_ids_t)


def test_decode_yolov8_values():
    rows = raw_rows([[100, 50, 20, 10], [300, 200, 40, 40]],
                    [[0.1, 0.8, 0.05], [0.6, 0.2, 0.9]])
    boxes, scores, class_ids = decode(rows.T, "yolov8", 3, "pixels", (640, 640), 0.0)
    np.testing.assert_allclose(boxes, [[90, 45, 110, 55], [280, 180, 320, 220]])
    np.testing.assert_allclose(scores, [0.8, 0.9], rtol=1e-6)
    assert class_ids.tolist() == [1, 2]
    assert boxes.dtype == np.float64 and scores.dtype == np.float64


def test_decode_yolov5_multiplies_class_scores_by_objectness():
    cxcywh = [[100, 100, 20, 20], [200, 200, 20, 20], [300, 300, 20, 20]]
    class_scores = [[0.9, 0.1], [0.2, 0.8], [0.5, 0.6]]
    objectness = [0.5, 1.0, 0.1]
    rows = raw_rows(cxcywh, class_scores, objectness)
    assert rows.shape == (3, 7)
    boxes, scores, class_ids = decode(rows, "yolov5", 2, "pixels", (640, 640), 0.0)
    np.testing.assert_allclose(scores, [0.45, 0.8, 0.06], rtol=1e-6)
    assert class_ids.tolist() == [0, 1, 1]

    # Objectness takes a box below min_score that its class score alone would pass.
    boxes, scores, class_ids = decode(rows, "yolov5", 2, "pixels", (640, 640), 0.4)
    np.testing.assert_allclose(scores, [0.45, 0.8], rtol=1e-6)
    np.testing.assert_allclose(boxes, [[90, 90, 110, 110], [190, 190, 210, 210]])


def test_decode_normalized_units_are_scaled_by_input_size():
    rows = raw_rows([[0.5, 0.25, 0.1, 0.2]], [[0.9]])
    boxes, _, _ = decode(rows, "yolov8", 1, "normalized", (320, 640), 0.0)  # (height, width)
    # cx 320, cy 80, w 64, h 64
    np.testing.assert_allclose(boxes, [[288, 48, 352, 112]])
    pixels, _, _ = decode(rows, "yolov8", 1, "pixels", (320, 640), 0.0)
    np.testing.assert_allclose(pixels, [[0.45, 0.15, 0.55, 0.35]], rtol=1e-6)


def test_decode_min_score_filters():
    rows = raw_rows([[10, 10, 4, 4]] * 4, [[0.1, 0.05], [0.3, 0.5], [0.49, 0.2], [0.7, 0.99]])
    _, scores, class_ids = decode(rows, "yolov8", 2, "pixels", (64, 64), 0.5)
    np.testing.assert_allclose(scores, [0.5, 0.99], rtol=1e-6)  # min_score itself is kept
    assert class_ids.tolist() == [1, 1]
    boxes, scores, class_ids = decode(rows, "yolov8", 2, "pixels", (64, 64), 0.995)
    assert boxes.shape == (0, 4) and scores.shape == (0,) and class_ids.shape == (0,)


# --- ImageAI's NMS, on the CPU and as a GPU runs it ------------------------------------------

def imageai_rows(seed: int, images: int = 4, per_image: int = 400, classes: int = 5):
    """Candidate rows [image, x1, y1, x2, y2, objectness, class score, class id] crowded enough
    that the NMS suppresses most of them."""
    import torch

    rng = np.random.default_rng(seed)
    count = images * per_image
    xy = rng.uniform(-10, 60, (count, 2))
    wh = rng.uniform(40, 100, (count, 2))
    rows = np.column_stack([rng.integers(0, images, count), xy, xy + wh, rng.uniform(0.5, 1, count),
                            rng.uniform(0.1, 1, count), rng.integers(0, classes, count)])
    return torch.from_numpy(rows.astype(np.float32))


def imageai_greedy(rows, classes: int) -> list[int]:
    """The greedy NMS of imageai.yolov3.utils.get_predictions, box by box: per image and class,
    by objectness, a box goes when its IoU (+1-pixel areas, float32) with a kept one is >= 0.4."""
    import torch

    kept = []
    for image in range(int(rows[:, 0].max()) + 1):
        for cls in range(classes):
            members = torch.nonzero((rows[:, 0] == image) & (rows[:, 7] == cls)).squeeze(1)
            members = members[torch.sort(rows[members, 5], descending=True)[1]]
            alive = [True] * len(members)
            for i in range(len(members)):
                if not alive[i]:
                    continue
                kept.append(int(members[i]))
                a = rows[members[i], 1:5]
                for j in range(i + 1, len(members)):
                    b = rows[members[j], 1:5]
                    w = torch.clamp(torch.min(a[2], b[2]) - torch.max(a[0], b[0]) + 1, min=0)
                    h = torch.clamp(torch.min(a[3], b[3]) - torch.max(a[1], b[1]) + 1, min=0)
                    inter = w * h
                    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
                    if not bool(inter / union < 0.4):
                        alive[j] = False
    return kept


def test_imageai_nms_on_the_cpu_is_imageai_s_box_by_box_loop():
    from detectors.imageai_yolo import suppress

    rows = imageai_rows(11, images=2, per_image=150)
    kept = suppress(rows, 5).tolist()
    assert kept == imageai_greedy(rows, 5)
    assert 20 < len(kept) < len(rows) // 2   # the case keeps some boxes and suppresses most


def test_the_gpu_s_single_nms_call_keeps_what_the_per_class_calls_keep():
    """The GPU path (one nms call for every image and class, groups moved apart in float64)
    run here on the CPU: the same rows, in the same order, as the exact per-class path."""
    from detectors.imageai_yolo import _suppress_at_once, suppress

    for seed in (1, 2, 3):
        rows = imageai_rows(seed)
        groups = rows[:, 0].long() * 5 + rows[:, 7].long()
        boxes = rows[:, 1:5].clone()
        boxes[:, 2:] += 1
        assert _suppress_at_once(rows, groups, boxes).tolist() == suppress(rows, 5).tolist()


def test_an_overflowed_box_does_not_poison_the_other_groups():
    """A box of infinite size (an overflowing exp) suppresses nothing (its IoU is NaN) and the
    other boxes are kept exactly as without it. On a GPU such a batch takes this per-class
    path: the single call's group offsets would be inf for every group."""
    import torch

    from detectors.imageai_yolo import suppress

    rows = imageai_rows(4, images=2, per_image=100)
    clean = suppress(rows, 5).tolist()
    broken = torch.cat([rows, torch.tensor([[1, 10, 10, float("inf"), float("inf"), 0.99, 0.9, 4]])])
    kept = suppress(broken, 5).tolist()
    assert [i for i in kept if i != len(rows)] == clean and len(rows) in kept
