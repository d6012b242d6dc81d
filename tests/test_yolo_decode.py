"""detectors/yolo_decode.py directly: `nms` against a brute-force greedy class-wise reference,
across-class independence, empty input and max_detections; `decode` for both yolov8 output
orientations, yolov5 objectness, normalized box units and min_score. ImageAI's YOLO steps after
the network (detectors/imageai_yolo.py): the numpy ones (OpenVINO's path) against brute-force
references without importing a framework, then against ImageAI's own layers and the torch path;
the torch ones against ImageAI's box-by-box loop."""
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


# --- ImageAI's steps in numpy (OpenVINO's path), against brute force: no framework imported ----

SPECS = [{"anchors": [[81, 82], [135, 169], [344, 319]], "num_classes": 3, "width": 416},
         {"anchors": [[10, 14], [23, 27], [37, 58]], "num_classes": 3, "width": 416}]


def random_heads(rng, batch: int, side: int, scale: float = 3.0) -> list[np.ndarray]:
    """Raw head outputs [batch, anchors * (5 + classes), side / stride, side / stride] for SPECS
    at an input of `side` (strides 32 and 16), with values past float32's exp range mixed in."""
    heads = []
    for spec, stride in zip(SPECS, (32, 16)):
        grid = side // stride
        raw = rng.normal(0, scale, (batch, len(spec["anchors"]) * (5 + spec["num_classes"]), grid, grid))
        extreme = rng.random(raw.shape) < 0.02
        raw[extreme] = rng.choice([-200.0, -90.0, 89.0, 200.0], int(extreme.sum()))
        heads.append(raw.astype(np.float32))
    return heads


def reference_decode(spec: dict, raw: np.ndarray) -> np.ndarray:
    """ImageAI's transform_prediction written out element by element (float64, then float32):
    row (cell * anchors + anchor) of image b holds x, y, w, h, objectness, class scores."""
    batch, _, height, width = raw.shape
    anchors, attrs = spec["anchors"], 5 + spec["num_classes"]
    stride = spec["width"] // height
    out = np.zeros((batch, height * width * len(anchors), attrs))
    sigmoid = lambda v: 1 / (1 + np.exp(-v))   # noqa: E731
    with np.errstate(over="ignore"):
        for b, a, i, j in np.ndindex(batch, len(anchors), height, width):
            v = raw[b, a * attrs:(a + 1) * attrs, i, j].astype(np.float64)
            out[b, (i * width + j) * len(anchors) + a] = [
                (sigmoid(v[0]) + j) * stride, (sigmoid(v[1]) + i) * stride,
                np.exp(v[2]) * anchors[a][0], np.exp(v[3]) * anchors[a][1], *sigmoid(v[4:])]
        return out.astype(np.float32)


@pytest.mark.parametrize("side", [416, 128])   # serving, and the load check's probe (stride 416 // 4)
def test_numpy_decode_is_imageai_s_detection_layers_written_out(side):
    from detectors.imageai_yolo import decode_heads

    rng = np.random.default_rng(side)
    heads = random_heads(rng, 3, side)
    before = [head.copy() for head in heads]
    got = decode_heads(SPECS, heads)
    wanted = np.concatenate([reference_decode(spec, raw) for spec, raw in zip(SPECS, heads)], 1)
    assert got.dtype == np.float32 and got.shape == wanted.shape == (3, sum(3 * (side // s) ** 2 for s in (32, 16)), 8)
    assert np.isinf(got).any() and (got[..., 2:4] == 0).any()   # exp past float32's range both ways
    np.testing.assert_allclose(got, wanted, rtol=1e-6, atol=1e-30)
    assert all(np.array_equal(a, b) for a, b in zip(heads, before))   # the raw outputs untouched
    one = decode_heads(SPECS, [head[1:2] for head in heads])
    assert np.array_equal(one[0], got[1])   # an image decodes alike alone and in a batch


def reference_candidates(pred: np.ndarray, classes: int) -> list[list[float]]:
    rows = []
    for image, anchor in np.ndindex(pred.shape[:2]):
        x, y, w, h, objectness, *scores = pred[image, anchor, :5 + classes]
        best = max(range(classes), key=lambda k: (scores[k], -k))   # the first of equal scores
        if objectness > np.float32(0.5) and scores[best] != 0:
            half_w, half_h = w / np.float32(2), h / np.float32(2)
            rows.append([image, x - half_w, y - half_h, x + half_w, y + half_h, objectness, scores[best], best])
    return rows


def test_numpy_candidates_are_imageai_s_gate_written_out():
    from detectors.imageai_yolo import candidates_np

    rng = np.random.default_rng(3)
    pred = rng.uniform(0, 1, (3, 400, 8)).astype(np.float32)
    pred[..., :4] *= np.float32(300)
    pred[:, ::7, 5:] = pred[:, ::7, 5:6]       # equal class scores: the first one is the best
    pred[:, ::11, 5:] = 0                      # no class scored: dropped
    pred[:, ::13, 4] = np.float32(0.5)         # on the gate: not past it
    pred[2, :, 4] = np.float32(0.2)            # an image with no candidate
    got = candidates_np(pred, 3)
    wanted = np.asarray(reference_candidates(pred, 3), np.float32).reshape(-1, 8)
    assert got.dtype == np.float32 and 200 < len(got) < 800
    assert np.array_equal(got, wanted)
    assert candidates_np(pred[:0], 3).shape == (0, 8)


def nms_rows(seed: int, images: int = 3, per_image: int = 300, classes: int = 4, extent: float = 70) -> np.ndarray:
    """Candidate rows, crowded enough that most are suppressed (where `extent` is small), with exact
    ties in objectness, boxes of no size (an exp that underflowed), and boxes of infinite size (one
    that overflowed)."""
    rng = np.random.default_rng(seed)
    count = images * per_image
    xy = rng.uniform(-10, extent - 10, (count, 2))
    wh = rng.uniform(40, 100, (count, 2))
    wh[rng.random(count) < 0.1] = 0
    rows = np.column_stack([rng.integers(0, images, count), xy, xy + wh,
                            rng.choice(np.linspace(0.55, 1, 12), count),   # a dozen values: many ties
                            rng.uniform(0.1, 1, count), rng.integers(0, classes, count)]).astype(np.float32)
    rows[rng.random(count) < 0.02, 3:5] = np.inf
    return rows


def reference_imageai_nms(rows: np.ndarray, classes: int) -> list[int]:
    """ImageAI's get_predictions NMS box by box, in float32: per image and class, by objectness
    (equal ones in candidate order), a box goes when its IoU (+1-pixel areas) with a kept one is
    >= 0.4; a NaN IoU (two infinite boxes) suppresses nothing."""
    one, kept = np.float32(1), []
    with np.errstate(invalid="ignore", over="ignore"):
        for image, cls in np.ndindex(int(rows[:, 0].max()) + 1 if len(rows) else 0, classes):
            members = [i for i in range(len(rows)) if rows[i, 0] == image and rows[i, 7] == cls]
            alive = sorted(members, key=lambda i: -rows[i, 5])
            while alive:
                best, alive = alive[0], alive[1:]
                kept.append(best)
                a = rows[best, 1:5]
                area_a = (a[2] - a[0] + one) * (a[3] - a[1] + one)
                survivors = []
                for j in alive:
                    b = rows[j, 1:5]
                    w = np.maximum(np.minimum(a[2], b[2]) - np.maximum(a[0], b[0]) + one, np.float32(0))
                    h = np.maximum(np.minimum(a[3], b[3]) - np.maximum(a[1], b[1]) + one, np.float32(0))
                    area_b = (b[2] - b[0] + one) * (b[3] - b[1] + one)
                    if not w * h / (area_a + area_b - w * h) >= np.float32(0.4):
                        survivors.append(j)
                alive = survivors
    return kept


@pytest.mark.parametrize("seed, per_image, extent, pairs_at_once", [
    (1, 300, 70, None), (2, 300, 70, None), (3, 700, 70, None),
    (3, 700, 70, 1000),      # the pairs in many chunks
    (4, 250, 600, None)])   # spread out: most pairs never overlap along x
def test_numpy_nms_is_imageai_s_box_by_box_loop(seed, per_image, extent, pairs_at_once, monkeypatch):
    from detectors import imageai_yolo
    from detectors.imageai_yolo import suppress_np

    if pairs_at_once:
        monkeypatch.setattr(imageai_yolo, "_PAIRS_AT_ONCE", pairs_at_once)
    rows = nms_rows(seed, per_image=per_image, classes=4 if per_image == 300 else 1, extent=extent)
    kept = suppress_np(rows, 4)
    assert kept.dtype == np.int64
    assert kept.tolist() == reference_imageai_nms(rows, 4)
    assert 30 < len(kept) < len(rows) * (0.9 if extent > 70 else 0.33)   # keeps some, suppresses some
    infinite = np.flatnonzero(np.isinf(rows[:, 3]))
    assert set(infinite) <= set(kept.tolist())   # an infinite box suppresses nothing and is not suppressed


def test_numpy_nms_edge_cases():
    from detectors.imageai_yolo import suppress_np

    assert suppress_np(np.zeros((0, 8), np.float32), 80).tolist() == []
    box = [0, 10, 10, 50, 50]
    rows = np.asarray([[*box, 0.9, 0.5, 2], [*box, 0.9, 0.5, 2], [*box, 0.9, 0.5, 1], [1, 10, 10, 50, 50, 0.7, 0.5, 2],
                       [0, 10, 10, 10, 10, 0.95, 0.5, 2], [0, 10.2, 10.2, 10.2, 10.2, 0.8, 0.5, 2]], np.float32)
    # Per image, class ascending, best first; of two equal boxes with equal objectness the first
    # stays; a box of no size counts one pixel, so another of no size 0.2 px off overlaps it
    # (IoU 0.64 / 1.36).
    assert suppress_np(rows, 80).tolist() == [2, 4, 0, 3]
    # +1-pixel areas 5, 2 and 1 inside it: IoU exactly 0.4 (2 / 5) suppresses, 0.2 does not.
    nested = np.asarray([[0, 0, 0, 0, 4, 0.9, 0.5, 0], [0, 0, 0, 0, 1, 0.8, 0.5, 0], [0, 0, 0, 0, 0, 0.7, 0.5, 0]],
                        np.float32)
    assert suppress_np(nested, 1).tolist() == [0, 2]


def test_numpy_rescaling_is_detect_s_written_out():
    from detectors.imageai_yolo import YOLO_INPUT, rescaled_np

    rng = np.random.default_rng(9)
    sizes = np.asarray([(640, 480), (300, 500), (2000, 1), (416, 416)], np.float32)
    rows = rng.uniform(-50, 466, (400, 8)).astype(np.float32)
    rows[:, 0] = rng.integers(0, len(sizes), len(rows))
    got = rescaled_np(rows.copy(), sizes)
    side, two = np.float32(YOLO_INPUT), np.float32(2)
    for row, out in zip(rows, got):
        width, height = sizes[int(row[0])]
        scaling = min(side / width, side / height)
        x = [(v - (side - scaling * width) / two) / scaling for v in row[[1, 3]]]
        y = [(v - (side - scaling * height) / two) / scaling for v in row[[2, 4]]]
        wanted = [min(max(x[0], 0), width), min(max(y[0], 0), height), min(max(x[1], 0), width),
                  min(max(y[1], 0), height)]
        assert out[1:5].tolist() == np.asarray(wanted, np.float32).tolist()
        assert out[[0, 5, 6, 7]].tolist() == row[[0, 5, 6, 7]].tolist()


# --- the numpy steps against ImageAI's own layers and the torch path (frameworks imported) -----

@pytest.mark.parametrize("side", [416, 128])
def test_numpy_decode_equals_imageai_s_detection_layers(side):
    """ImageAI's DetectionLayer made from each spec, on the same raw outputs: equal within
    float32's exp (torch's and numpy's differ by an ulp or two)."""
    import torch
    from imageai.yolov3.yolov3 import DetectionLayer

    from detectors.imageai_yolo import decode_heads, layer_spec

    layers = []
    for spec in SPECS:
        anchors = [v for pair in spec["anchors"] for v in pair]
        layer = DetectionLayer(anchors=anchors, anchor_masks=(0, 1, 2), layer=0, num_classes=3, device="cpu").eval()
        assert layer_spec(layer) == spec   # what a cache entry records makes the same layer
        layers.append(layer)
    heads = random_heads(np.random.default_rng(side), 2, side)
    with torch.no_grad():
        wanted = torch.cat([layer(torch.from_numpy(raw.copy())) for layer, raw in zip(layers, heads)], 1).numpy()
    np.testing.assert_allclose(decode_heads(SPECS, heads), wanted, rtol=1e-6, atol=1e-30)


def test_the_numpy_steps_detect_what_the_torch_steps_detect():
    """detect() on one network output, handed over as numpy (OpenVINO's path) and as a torch
    tensor (torch's path: candidates, torchvision's NMS, rescaling): the same detections, in the
    same order, with thousands of candidates over several images of several sizes."""
    import torch

    from detectors.imageai_yolo import detect

    rng = np.random.default_rng(21)
    pred = np.concatenate([rng.uniform(0, 416, (4, 3000, 2)), rng.uniform(5, 120, (4, 3000, 2)),
                           rng.uniform(0.3, 1, (4, 3000, 1)), rng.uniform(0, 1, (4, 3000, 5))], 2).astype(np.float32)
    rgbs = [np.zeros(shape, np.uint8) for shape in ((480, 640, 3), (500, 300, 3), (416, 416, 3), (1, 2000, 3))]
    classes = [f"class {i}" for i in range(5)]
    on_numpy = detect(lambda inputs: pred, classes, rgbs, 0.3)
    on_torch = detect(lambda inputs: torch.from_numpy(pred.copy()), classes, rgbs, 0.3)
    assert on_numpy == on_torch
    assert all(100 < len(found) < 2000 for found in on_numpy[:3])
