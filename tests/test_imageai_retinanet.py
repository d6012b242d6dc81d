"""RetinaNet's steps around its network in numpy (detectors/imageai_retinanet.py): hand-computed
cases and brute force without any framework, then each step against torchvision's own code
(torch and torchvision imported, no network built). The whole pipeline against torchvision's
RetinaNet.forward is in test_real_architectures.py."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from detectors import imageai_retinanet as retina

# torchvision's retinanet_resnet50_fpn, as ImageAI builds it (a real-architecture test compares
# the steps a conversion records with the loaded network's).
STEPS = retina.Steps(
    min_size=800, max_size=1333, image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225),
    size_divisible=32, anchor_sizes=tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128, 256, 512)),
    aspect_ratios=((0.5, 1.0, 2.0),) * 5, box_weights=(1.0, 1.0, 1.0, 1.0), bbox_xform_clip=math.log(1000 / 16),
    score_thresh=0.05, topk_candidates=1000, nms_thresh=0.5, detections_per_img=300)
# Heights and widths: a photo, portrait, landscape, tiny, a 2000x3 strip (resized to 1 row).
SIZES = [(480, 640), (500, 300), (200, 1500), (7, 5), (1, 1), (3, 2000), (1333, 800)]


def test_the_steps_travel_through_the_cache_entry_s_json():
    assert retina.Steps.from_details(json.loads(json.dumps(STEPS.to_details()))) == STEPS


def test_an_entry_without_steps_is_refused():
    with pytest.raises(KeyError):
        retina.Steps.from_details({})


@pytest.mark.parametrize("size, resized", [((480, 640), (800, 1066)), ((640, 480), (1066, 800)),
                                           ((3000, 1000), (1333, 444)), ((1, 1), (800, 800)),
                                           ((1, 2000), (0, 1333)), ((3, 2000), (1, 1333))])
def test_resized_size_is_the_shorter_side_to_800_unless_the_longer_passes_1333(size, resized):
    assert retina.resized_size(*size, 800, 1333) == resized


def test_bilinear_resize_by_hand():
    """align_corners=False: output pixel i samples the input at (i + 0.5) * in/out - 0.5,
    clamped to the edges."""
    row = np.array([[[0.0], [4.0]]], np.float32)                    # 1 x 2, one channel
    assert retina.resize_bilinear(row, 1, 4)[0, :, 0].tolist() == [0, 1, 3, 4]   # at -0.25, 0.25, 0.75, 1.25
    assert retina.resize_bilinear(np.arange(4, dtype=np.float32).reshape(1, 4, 1), 1, 2)[0, :, 0].tolist() == [0.5, 2.5]
    square = np.array([[0, 4], [8, 12]], np.float32)[:, :, None].repeat(3, axis=2)
    got = retina.resize_bilinear(square, 4, 4)
    expected = np.array([[0, 1, 3, 4], [2, 3, 5, 6], [6, 7, 9, 10], [8, 9, 11, 12]], np.float32)
    assert (got == expected[:, :, None]).all()


def test_the_transform_normalises_resizes_and_pads_to_multiples_of_32():
    pixels = np.full((480, 640, 3), 255, np.uint8)
    batch, size = retina.transform(pixels, STEPS)
    assert batch.shape == (1, 3, 800, 1088) and batch.dtype == np.float32 and size == (800, 1066)
    white = (1 - np.asarray(STEPS.image_mean, np.float32)) / np.asarray(STEPS.image_std, np.float32)
    assert np.allclose(batch[0, :, :800, :1066], white[:, None, None], atol=1e-6)
    assert not batch[0, :, :, 1066:].any()


def test_cell_anchors_by_hand():
    """Zero-centred, for each aspect ratio (height / width) the three sizes, halved and rounded."""
    assert retina.cell_anchors((32, 40, 50), (0.5, 1.0, 2.0)).tolist() == [
        [-23, -11, 23, 11], [-28, -14, 28, 14], [-35, -18, 35, 18],
        [-16, -16, 16, 16], [-20, -20, 20, 20], [-25, -25, 25, 25],
        [-11, -23, 11, 23], [-14, -28, 14, 28], [-18, -35, 18, 35]]


def test_level_anchors_cover_the_grid_row_major_and_any_rows_of_it():
    cell = retina.cell_anchors((32, 40, 50), (0.5, 1.0, 2.0))
    grid = retina.level_anchors(cell, (2, 3), (8, 16))
    assert grid.shape == (2 * 3 * 9, 4) and grid.dtype == np.float32
    for row in range(2):
        for column in range(3):
            for kind in range(9):
                shift = np.array([column * 16, row * 8] * 2, np.float32)
                assert (grid[(row * 3 + column) * 9 + kind] == cell[kind] + shift).all()
    rows = np.array([53, 0, 17])
    assert (retina.level_anchors(cell, (2, 3), (8, 16), rows) == grid[rows]).all()


def test_a_photo_s_anchors_count_at_serving_size():
    """A 640x480 photo pads to 800x1088: five levels at strides 8 to 128, nine anchors a place."""
    grids = [(100, 136), (50, 68), (25, 34), (13, 17), (7, 9)]
    counts = [len(retina.level_anchors(retina.cell_anchors(s, r), g, (800 // g[0], 1088 // g[1])))
              for g, s, r in zip(grids, STEPS.anchor_sizes, STEPS.aspect_ratios)]
    assert counts == [9 * h * w for h, w in grids] and sum(counts) == 163206


def test_decode_by_hand():
    anchors = np.array([[0, 0, 10, 20], [0, 0, 10, 20]], np.float32)
    codes = np.array([[0.1, -0.2, math.log(2), 0], [0, 0, 100, 0]], np.float32)
    boxes = retina.decode(codes, anchors, STEPS)
    assert boxes[0] == pytest.approx([-4, -4, 16, 16], abs=1e-5)           # centre (6, 6), 20 x 20
    assert boxes[1] == pytest.approx([5 - 312.5, 0, 5 + 312.5, 20], rel=1e-5)  # width clipped at 1000/16 times


def _iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _random_boxes(count: int, seed: int):
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 300, (count, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 80, (count, 2))], axis=1).astype(np.float32)
    return boxes, rng.permutation(count).astype(np.float32) / count, rng.integers(0, 4, count)


@pytest.mark.parametrize("count", [300, 2500])   # either side of torchvision's 1000-box switch
def test_batched_nms_equals_brute_force(count):
    boxes, scores, labels = _random_boxes(count, count)
    kept: list[int] = []
    for i in np.argsort(-scores):
        if all(labels[k] != labels[i] or _iou(boxes[k].tolist(), boxes[i].tolist()) <= 0.5 for k in kept):
            kept.append(int(i))
    got = retina.batched_nms(boxes, scores, labels, 0.5)
    assert got.tolist() == kept and 20 < len(kept) < count


def test_batched_nms_of_nothing():
    assert retina.batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                              0.5).tolist() == []


def test_candidates_equal_sigmoid_threshold_and_top_k_brute_force():
    rng = np.random.default_rng(3)
    logits = rng.normal(-4, 1.5, (4000, 91)).astype(np.float32)
    codes = np.zeros((4000, 4), np.float32)
    anchors = np.tile(np.array([[0, 0, 10, 10]], np.float32), (4000, 1))
    boxes, scores, labels = retina._level_candidates(logits, codes, lambda rows: anchors[rows], STEPS, (5, 8))
    flat = 1 / (1 + np.exp(-logits.astype(np.float64).ravel()))
    passing = np.flatnonzero(flat > 0.05)
    best = passing[np.argsort(-flat[passing], kind="stable")][:1000]
    assert len(passing) > 1000 and labels.tolist() == (best % 91).tolist()
    assert np.allclose(scores, flat[best], rtol=1e-6)
    assert (boxes == np.array([0, 0, 8, 5], np.float32)).all()   # clipped to the 5 x 8 image


@pytest.mark.parametrize("pattern", ["ties", "off the sampled grid"])
def test_the_best_logits_survive_the_narrowing_to_fewer_candidates(pattern):
    """Where more than 4 x topk_candidates logits pass, every 16th logit estimates a higher
    floor: never one that drops a logit of the top k (equal logits, or the best ones where the
    estimate does not look)."""
    flat = np.zeros(200_000, np.float32)
    if pattern == "off the sampled grid":
        flat[1::16] = np.arange(len(flat[1::16]), dtype=np.float32)
    got = retina._best_logits(flat, STEPS)
    assert len(got) == 1000 and (np.diff(got) > 0).all()
    assert np.sort(flat[got]).tolist() == np.sort(flat)[-1000:].tolist()


def _one_detection_network(batch):
    """A dense part answering for an 800x1088 batch: one anchor scored for class 3 (level 0,
    row 10, column 20, the 40-pixel square), no box offsets."""
    grids = [(100, 136), (50, 68), (25, 34), (13, 17), (7, 9)]
    anchors = 9 * sum(h * w for h, w in grids)
    cls_logits = np.full((1, anchors, 91), -10, np.float32)
    cls_logits[0, (10 * 136 + 20) * 9 + 4, 3] = 5
    return [cls_logits, np.zeros((1, anchors, 4), np.float32), *(np.zeros((1, 1, h, w), np.float32) for h, w in grids)]


def test_one_detection_comes_back_in_the_image_s_coordinates():
    boxes, scores, labels = retina.detections(_one_detection_network, STEPS, np.zeros((480, 640, 3), np.uint8))
    assert labels.tolist() == [3] and scores.tolist() == pytest.approx([1 / (1 + math.exp(-5))])
    # [140, 60, 180, 100] on the 1066 x 800 resized image, scaled by 640/1066 and 480/800.
    assert boxes[0].tolist() == pytest.approx([140 * 640 / 1066, 36, 180 * 640 / 1066, 60], rel=1e-6)


def test_a_strip_resized_to_nothing_finds_nothing_without_the_network():
    def network(batch):
        raise AssertionError("not called")

    boxes, scores, labels = retina.detections(network, STEPS, np.zeros((1, 2000, 3), np.uint8))
    assert boxes.shape == (0, 4) and len(scores) == len(labels) == 0


# --- against torchvision's own code -----------------------------------------------------------

@pytest.mark.parametrize("height, width", SIZES)
def test_the_transform_equals_torchvision_s(height, width):
    """GeneralizedRCNNTransform on the service's 0-1 tensor: the same size, padding and values
    (float32 rounding apart: torch's kernel fuses some multiply-adds)."""
    torch = pytest.importorskip("torch")
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    pixels = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    reference = GeneralizedRCNNTransform(800, 1333, list(STEPS.image_mean), list(STEPS.image_std))
    images, _ = reference([torch.from_numpy(pixels).permute(2, 0, 1).float().div(255.0)])
    batch, size = retina.transform(pixels, STEPS)
    assert [size] == images.image_sizes and batch.shape == tuple(images.tensors.shape)
    np.testing.assert_allclose(batch, images.tensors.numpy(), rtol=0, atol=2e-6)


@pytest.mark.parametrize("padded", [(800, 1088), (1344, 800), (32, 1344), (800, 800)])
def test_anchors_equal_torchvision_s_generator(padded):
    torch = pytest.importorskip("torch")
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    grids = [(-(-padded[0] // stride), -(-padded[1] // stride)) for stride in (8, 16, 32, 64, 128)]
    generator = AnchorGenerator(STEPS.anchor_sizes, STEPS.aspect_ratios)
    maps = [torch.zeros(1, 1, *grid) for grid in grids]
    expected = generator(ImageList(torch.zeros(1, 3, *padded), [padded]), maps)[0].numpy()
    got = np.concatenate([retina.level_anchors(retina.cell_anchors(s, r), g, (padded[0] // g[0], padded[1] // g[1]))
                          for g, s, r in zip(grids, STEPS.anchor_sizes, STEPS.aspect_ratios)])
    assert got.dtype == expected.dtype and (got == expected).all()


def test_decode_equals_torchvision_s_box_coder():
    torch = pytest.importorskip("torch")
    from torchvision.models.detection._utils import BoxCoder

    rng = np.random.default_rng(5)
    anchors = np.concatenate([c := rng.uniform(0, 800, (5000, 2)), c + rng.uniform(16, 800, (5000, 2))], 1)
    codes = rng.normal(0, 2, (5000, 4)).astype(np.float32)
    codes[:50, 2:] = 30   # past bbox_xform_clip
    expected = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(torch.from_numpy(codes),
                                                            torch.from_numpy(anchors.astype(np.float32))).numpy()
    # float32 rounding apart (exp's last bit; a box side a few ulps of its centre): 1e-3 px
    np.testing.assert_allclose(retina.decode(codes, anchors.astype(np.float32), STEPS), expected, rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("count", [300, 1000, 1001, 2500])
def test_batched_nms_equals_torchvision_s(count):
    """Kept boxes and their order, on both sides of torchvision's switch from moving the classes
    apart (float32 offsets) to one NMS per class."""
    torch = pytest.importorskip("torch")
    from torchvision.ops import batched_nms

    boxes, scores, labels = _random_boxes(count, count + 1)
    expected = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), 0.5)
    assert retina.batched_nms(boxes, scores, labels, 0.5).tolist() == expected.tolist()


def test_without_a_gpu_driver_the_detector_asks_torch_nothing(tmp_path, monkeypatch):
    """The skeleton asks about a GPU before every OpenVINO start: where the host shows no GPU
    driver it must not import torch (a start from the converted-model cache imports no framework)."""
    import sys

    from registry import create_model
    from runtimes import frameworks

    detector = create_model("detection", "retina", tmp_path, download=False)
    monkeypatch.setitem(sys.modules, "torch", None)   # an import of torch now raises
    monkeypatch.setattr(frameworks, "gpu_possible", lambda: False)
    assert detector._gpu_reason() is None
    with pytest.raises(ImportError):
        detector.gpu_in_use()   # what the skeleton asks where a driver is present
