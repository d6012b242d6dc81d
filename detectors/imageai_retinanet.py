"""RetinaNet (torchvision's, as ImageAI loads it) with OpenVINO running its backbone, feature
pyramid and heads (the convolutions), and numpy running every step around them exactly as
`RetinaNet.forward` runs them in evaluation mode: the transform (normalise, resize, pad),
anchors, box decoding, score threshold, top-k, clipping, class-wise NMS and the rescale to the
original size, in float32 as torch computes them.

Why numpy and not torch: a replica serving from the converted-model cache imports no torch,
torchvision or ImageAI at all (their import is most of a start, and their memory stays).
Why not inside the OpenVINO graph: the cached network is the one the conversion checked against
torch, output for output, at every load; the steps around it change sizes with every image
(the resize's output, the candidates past the threshold, NMS's loop), which a graph would have
to express with dynamic shapes whose numerics (OpenVINO's own interpolation, sorting) are not
torchvision's. In numpy each step is torchvision's arithmetic, testable against it.

The dense part takes any padded input size (the transform resizes each image to its own
size), so it is converted with dynamic height and width. Besides the two head outputs it
returns one channel of each pyramid level: the anchors depend only on their sizes.

The steps' settings (sizes, mean and std, anchor sizes, thresholds) are read from ImageAI's
loaded network when it is converted and recorded in the converted-model cache entry (`Steps`):
a start from the cache reads them there, and never builds torchvision's network.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from contract import InferenceOptions
from runtimes import openvino

# The input the load-time check runs at: a small padded size (multiples of 32, as the transform
# pads). The dense part takes any size, and a check at the transform's ~800x1066 would cost a
# large part of a start (docs/benchmarks.md in git history, at fec9c9d). A conversion is also
# checked once at serving size.
PROBE_SIZE = (128, 128)
# How far below logit(score_thresh) a logit is still given its sigmoid: far more than the
# float32 rounding of a sigmoid, so the threshold is applied to exactly torch's scores.
_LOGIT_MARGIN = 1e-3


@dataclasses.dataclass(frozen=True)
class Steps:
    """The settings of torchvision's steps around the dense part, as the loaded network has
    them: one place, recorded in the cache entry at conversion (tests compare them with
    torchvision's network)."""
    min_size: int
    max_size: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    size_divisible: int
    anchor_sizes: tuple[tuple[int, ...], ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    box_weights: tuple[float, ...]
    bbox_xform_clip: float
    score_thresh: float
    topk_candidates: int
    nms_thresh: float
    detections_per_img: int

    @classmethod
    def of(cls, network) -> "Steps":
        """Read from torchvision's RetinaNet. Raises openvino.Unusable where the network does
        something these steps do not (a fixed input size, training mode)."""
        transform, anchors, coder = network.transform, network.anchor_generator, network.box_coder
        if network.training or transform.fixed_size is not None:
            raise openvino.Unusable("RetinaNet's transform is not the evaluation transform the steps implement")
        return cls(min_size=int(transform.min_size[-1]), max_size=int(transform.max_size),
                   image_mean=tuple(map(float, transform.image_mean)),
                   image_std=tuple(map(float, transform.image_std)),
                   size_divisible=int(transform.size_divisible),
                   anchor_sizes=tuple(tuple(map(int, s)) for s in anchors.sizes),
                   aspect_ratios=tuple(tuple(map(float, r)) for r in anchors.aspect_ratios),
                   box_weights=tuple(map(float, coder.weights)), bbox_xform_clip=float(coder.bbox_xform_clip),
                   score_thresh=float(network.score_thresh), topk_candidates=int(network.topk_candidates),
                   nms_thresh=float(network.nms_thresh), detections_per_img=int(network.detections_per_img))

    def to_details(self) -> dict:
        return {"steps": dataclasses.asdict(self)}

    @classmethod
    def from_details(cls, details: dict) -> "Steps":
        """As recorded by `to_details` (JSON: lists back to tuples). Raises KeyError or
        TypeError for an entry without them: the cache then converts again."""
        def tuples(value):
            return tuple(tuples(v) for v in value) if isinstance(value, list) else value
        return cls(**{name: tuples(value) for name, value in details["steps"].items()})


# --- the transform ----------------------------------------------------------------------------

def resized_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """The size torchvision's transform resizes an image to: one scale (shorter side to
    min_size unless the longer would pass max_size), each side int(side * scale) in Python
    floats, as F.interpolate computes its output size with recompute_scale_factor."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return int(height * scale), int(width * scale)


@functools.lru_cache(maxsize=64)
def _source_positions(size_in: int, size_out: int) -> tuple[np.ndarray, ...]:
    """(index0, index1, weight0, weight1) per output index: torch's upsample_bilinear2d with
    align_corners=False and the scale recomputed from the sizes (size_in / size_out in float32).
    The source position scale * (i + 0.5) - 0.5 is rounded once (torch's kernel fuses the
    multiply-add: rounding twice moves a weight by one float32 step of the position)."""
    scale = np.float64(np.float32(size_in) / np.float32(size_out))
    position = (scale * (np.arange(size_out, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
    position = np.maximum(position, np.float32(0))
    index0 = np.minimum(np.floor(position).astype(np.int64), size_in - 1)
    weight1 = np.clip(position - index0.astype(np.float32), np.float32(0), np.float32(1))
    index1 = index0 + (index0 < size_in - 1)
    return index0, index1, np.float32(1) - weight1, weight1


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An HWC float32 image resized as torch's bilinear interpolation resizes it (CHW there:
    each channel alike): each output row mixes two input rows, each already mixed from two
    columns, in that order, in float32."""
    rows0, rows1, row_weight0, row_weight1 = _source_positions(image.shape[0], height)
    cols0, cols1, col_weight0, col_weight1 = _source_positions(image.shape[1], width)
    mixed = image.take(cols0, axis=1)
    mixed *= col_weight0[:, None]
    right = image.take(cols1, axis=1)
    right *= col_weight1[:, None]
    mixed += right
    resized = mixed.take(rows0, axis=0)
    resized *= row_weight0[:, None, None]
    lower = mixed.take(rows1, axis=0)
    lower *= row_weight1[:, None, None]
    resized += lower
    return resized


def normalised(pixels: np.ndarray, steps: Steps) -> np.ndarray:
    """HWC 0-255 pixels as the network's input values: /255, minus the mean, over the std, in
    float32 (the service's tensor, then GeneralizedRCNNTransform.normalize)."""
    values = pixels.astype(np.float32)
    values /= np.float32(255)
    values -= np.asarray(steps.image_mean, np.float32)
    values /= np.asarray(steps.image_std, np.float32)
    return values


def transform(pixels: np.ndarray, steps: Steps) -> tuple[np.ndarray, tuple[int, int]]:
    """GeneralizedRCNNTransform of one HWC 0-255 image: normalised, resized, and zero-padded at
    the bottom and right to multiples of size_divisible. The [1, 3, H, W] batch and the resized
    size (the image's part of it). The image must not resize to 0 pixels (`resized_size`)."""
    height, width = resized_size(*pixels.shape[:2], steps.min_size, steps.max_size)
    divisible = steps.size_divisible
    batch = np.zeros((1, 3, -(-height // divisible) * divisible, -(-width // divisible) * divisible), np.float32)
    batch[0, :, :height, :width] = resize_bilinear(normalised(pixels, steps), height, width).transpose(2, 0, 1)
    return batch, (height, width)


# --- anchors and boxes ------------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def cell_anchors(sizes: tuple[int, ...], aspect_ratios: tuple[float, ...]) -> np.ndarray:
    """AnchorGenerator.generate_anchors in float32: [ratios x sizes, 4] zero-centred boxes,
    rounded half to even as torch.round rounds."""
    scales = np.asarray(sizes, np.float32)
    height_ratios = np.sqrt(np.asarray(aspect_ratios, np.float32))
    width_ratios = np.float32(1) / height_ratios
    widths = (width_ratios[:, None] * scales[None, :]).ravel()
    heights = (height_ratios[:, None] * scales[None, :]).ravel()
    anchors = np.round(np.stack([-widths, -heights, widths, heights], axis=1) / np.float32(2))
    anchors.setflags(write=False)
    return anchors


def level_anchors(cell: np.ndarray, grid: tuple[int, int], stride: tuple[int, int],
                  indices: np.ndarray | None = None) -> np.ndarray:
    """Rows `indices` (all by default) of AnchorGenerator's anchors on one pyramid level: for
    each grid position (row-major), each cell anchor moved to (column, row) x stride. Only the
    candidates' rows are needed to serve; all of them equal torchvision's grid."""
    if indices is None:
        indices = np.arange(grid[0] * grid[1] * len(cell))
    position, kind = np.divmod(indices, len(cell))
    row, column = np.divmod(position, grid[1])
    x, y = (column * stride[1]).astype(np.float32), (row * stride[0]).astype(np.float32)
    return np.stack([x, y, x, y], axis=1) + cell[kind]


def decode(codes: np.ndarray, anchors: np.ndarray, steps: Steps) -> np.ndarray:
    """BoxCoder.decode_single in float32: offsets and log-sizes relative to each anchor (the
    log-sizes clipped at bbox_xform_clip) to (x1, y1, x2, y2)."""
    f32 = np.float32
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    center_x, center_y = anchors[:, 0] + f32(0.5) * widths, anchors[:, 1] + f32(0.5) * heights
    wx, wy, ww, wh = (f32(w) for w in steps.box_weights)
    clip = f32(steps.bbox_xform_clip)
    dw, dh = np.minimum(codes[:, 2] / ww, clip), np.minimum(codes[:, 3] / wh, clip)
    x, y = codes[:, 0] / wx * widths + center_x, codes[:, 1] / wy * heights + center_y
    half_w, half_h = f32(0.5) * (np.exp(dw) * widths), f32(0.5) * (np.exp(dh) * heights)
    return np.stack([x - half_w, y - half_h, x + half_w, y + half_h], axis=1)


def _level_candidates(logits: np.ndarray, codes: np.ndarray, anchors, steps: Steps, size) -> tuple:
    """One pyramid level's (boxes, scores, labels) as postprocess_detections makes them: scores
    (sigmoid) above score_thresh, the topk_candidates best, their boxes decoded from their
    anchors (`anchors(indices)`) and clipped to the resized image."""
    classes, flat = logits.shape[-1], logits.reshape(-1)
    candidates = _best_logits(flat, steps)
    scores = np.float32(1) / (np.float32(1) + np.exp(-flat[candidates]))
    passed = scores > np.float32(steps.score_thresh)   # torch compares float32 scores with it as float32
    candidates, scores = candidates[passed], scores[passed]
    best = np.argsort(-scores, kind="stable")
    candidates, scores = candidates[best], scores[best]
    anchor, labels = np.divmod(candidates, classes)
    boxes = decode(codes[anchor], anchors(anchor), steps)
    height, width = size
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], np.float32(0), np.float32(width))
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], np.float32(0), np.float32(height))
    return boxes, scores, labels


def _best_logits(flat: np.ndarray, steps: Steps) -> np.ndarray:
    """The indices (ascending) of at most topk_candidates logits, the largest ones, among those
    whose sigmoid may pass score_thresh. The sigmoid is monotonic: the best logits are the best
    scores, and only those get a sigmoid."""
    best = steps.topk_candidates
    passing = flat > _logit_floor(steps.score_thresh)
    if np.count_nonzero(passing) > 4 * best:
        passing = _fewer_passing(flat, passing, best)
    candidates = np.flatnonzero(passing)
    if len(candidates) > best:
        candidates = np.sort(candidates[np.argpartition(flat[candidates], -best)[-best:]])
    return candidates


def _fewer_passing(flat: np.ndarray, passing: np.ndarray, best: int) -> np.ndarray:
    """`passing` narrowed to the logits above the `best`-th largest of every 16th logit, where
    at least `best` of them are left: those hold the `best` largest passing logits (and any
    equal to the last), a few thousand to select from instead of millions (a level holds up to
    ~11 million logits at serving size, and with untrained weights all may pass)."""
    sample = flat[::16]
    if len(sample) < best:
        return passing
    narrower = passing & (flat > np.partition(sample, -best)[-best])
    return narrower if np.count_nonzero(narrower) >= best else passing


def _logit_floor(score: float) -> float:
    """A logit below which no sigmoid passes `score`."""
    return math.log(score / (1 - score)) - _LOGIT_MARGIN if 0 < score < 1 else -math.inf


# --- non-maximum suppression ------------------------------------------------------------------

def batched_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """torchvision.ops.batched_nms: the indices kept, best score first (ties by index). Each
    class is suppressed on its own. For up to 1000 boxes torchvision moves each class's boxes
    apart by an offset (float32) and suppresses the moved boxes: their rounding is part of its
    answer, so it is made here too."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    if boxes.size <= 4000:
        boxes = boxes + (labels.astype(np.float32) * (boxes.max() + np.float32(1)))[:, None]
    order = np.argsort(-scores, kind="stable")
    ordered_labels = labels[order]
    kept = np.sort(np.concatenate([_greedy_nms(boxes, order[ordered_labels == label], threshold)
                                   for label in np.unique(labels)]))
    return kept[np.argsort(-scores[kept], kind="stable")]


def _greedy_nms(boxes: np.ndarray, order: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS of `boxes[order]` (best first), as torchvision's nms kernel computes it: the
    IoU in float32 (no +1 on sides), a box dropped when its IoU with a kept one is above the
    threshold (compared in float64; a NaN IoU drops nothing)."""
    x1, y1, x2, y2 = boxes[order].T
    areas = (x2 - x1) * (y2 - y1)
    rest, kept = np.arange(len(order)), []
    above, zero = np.float64(threshold), np.float32(0)
    while rest.size:
        best, rest = rest[0], rest[1:]
        kept.append(best)
        width = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), zero)
        height = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), zero)
        inter = width * height
        rest = rest[~(inter / (areas[best] + areas[rest] - inter) > above)]
    return order[np.asarray(kept, np.int64)]


# --- one image --------------------------------------------------------------------------------

def detections(dense, steps: Steps, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes, scores, labels) of one HWC RGB image in its own coordinates: network([image])[0]
    of torchvision's RetinaNet, with `dense` (numpy in, numpy out) computing the convolutions.
    Nothing for an image the transform would resize to 0 pixels (torchvision raises)."""
    height, width = rgb.shape[:2]
    if min(resized_size(height, width, steps.min_size, steps.max_size)) < 1:
        return nothing_found()
    batch, size = transform(rgb, steps)
    cls_logits, bbox_regression, *levels = dense(batch)
    grids = [tuple(level.shape[-2:]) for level in levels]
    per_anchor = cls_logits.shape[1] // sum(h * w for h, w in grids)
    found, start = [], 0
    for grid, sizes, ratios in zip(grids, steps.anchor_sizes, steps.aspect_ratios, strict=True):
        cell, count = cell_anchors(sizes, ratios), grid[0] * grid[1] * per_anchor
        stride = (batch.shape[2] // grid[0], batch.shape[3] // grid[1])
        found.append(_level_candidates(cls_logits[0, start:start + count], bbox_regression[0, start:start + count],
                                       functools.partial(level_anchors, cell, grid, stride), steps, size))
        start += count
    boxes, scores, labels = (np.concatenate(parts) for parts in zip(*found))
    keep = batched_nms(boxes, scores, labels, steps.nms_thresh)[:steps.detections_per_img]
    ratios = np.float32(width) / np.float32(size[1]), np.float32(height) / np.float32(size[0])
    boxes = boxes[keep] * np.array([ratios[0], ratios[1], ratios[0], ratios[1]], np.float32)
    return boxes, scores[keep], labels[keep]


def nothing_found() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """No boxes, scores or labels."""
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)


class OpenVinoRetinaNet:
    """The dense part compiled by OpenVINO, with the steps its cache entry recorded:
    `retinanet(rgb)` is (boxes, scores, labels), as `detections`."""

    def __init__(self, dense: openvino.CompiledNetwork):
        self.dense, self.steps, self.precision = dense, Steps.from_details(dense.details), dense.precision

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return detections(self.dense, self.steps, rgb)


# --- the conversion (torch: only where the cache has no valid entry) --------------------------

def dense_part(network):
    """A module: padded, normalised batch -> (cls_logits, bbox_regression, *one channel of
    each pyramid level). It shares the network's layers and weights."""
    import torch

    class Dense(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = network.backbone, network.head

        def forward(self, x):
            features = list(self.backbone(x).values())
            outputs = self.head(features)
            return (outputs["cls_logits"], outputs["bbox_regression"],
                    *(feature[:, :1] for feature in features))

    return Dense().eval()


def probe_input(steps: Steps) -> np.ndarray:
    """The load check's input: a fixed image, normalised as the transform normalises."""
    height, width = PROBE_SIZE
    return normalised(openvino.probe_batch(height, width, count=1)[0], steps).transpose(2, 0, 1)[None].copy()


def compile_dense(network, key: str, models_dir, options: InferenceOptions) -> OpenVinoRetinaNet:
    """The dense part compiled by OpenVINO with a dynamic input size, checked against torch,
    with its steps. `network()` gives ImageAI's loaded network, called only where the
    converted-model cache has no valid entry: its steps' settings are then recorded there."""
    def source():
        import torch

        loaded = network()
        steps, module = Steps.of(loaded), dense_part(loaded)
        probe = torch.from_numpy(probe_input(steps))
        with torch.no_grad():
            expected = [o.numpy() for o in module(probe)]

        def at_serving_size(compiled):
            """Once per conversion: the size the transform gives a 640x480 photo (~800x1088)."""
            large = torch.from_numpy(transform(openvino.probe_batch(480, 640, count=1, seed=7)[0], steps)[0])
            with torch.no_grad():
                wanted = [o.numpy() for o in module(large)]
            for got, output in zip(compiled(large.numpy()), wanted, strict=True):
                openvino.Expected.of(output).check(openvino.model_of(key), got)

        return openvino.Source(expected=expected, details=steps.to_details(), verify=at_serving_size,
                               convert=lambda: openvino.convert(module, example_input=probe))

    conversion = openvino.Conversion(
        key=key, probe=lambda compiled: compiled(probe_input(Steps.from_details(compiled.details))),
        source=source, input_shapes=[[1, 3, -1, -1]])
    return OpenVinoRetinaNet(openvino.compile_network(conversion, models_dir, options))
