"""ImageAI's YOLO post-processing without its per-box Python loop, with identical results,
for a batch of images in one network call, and the network split before its detection layers
so OpenVINO can run the convolutions.

Measured with `python -m bench` (docs/benchmarks.md in git history, at fec9c9d): ImageAI's `detectObjectsFromImage` spent
several times the network's forward pass outside it: converting and copying the full
image twice, drawing every box on it, and running non-maximum suppression one box at a time
through torch calls. This module keeps ImageAI's network, letterbox (`prepare_image`) and
arithmetic, stacks the letterboxed images of a micro-batch into one network call, and replaces
the loop with the same greedy algorithm run once per image and class: same thresholds
(objectness 0.5, IoU 0.4), same +1-pixel box areas, same order (by objectness), same
rescaling. Tests compare it with ImageAI's `detectObjectsFromImage` box for box on thousands of
candidate boxes, and a batch with the same images one at a time.

The steps after the network exist twice, one set per path, the same arithmetic in float32:
- OpenVINO's (the default on a CPU): the detection layers' decoding, the candidates, the NMS and
  the rescaling in numpy (`decode_heads`, `candidates_np`, `suppress_np`, `rescaled_np`), so a
  replica that starts from the converted-model cache serves without importing torch,
  torchvision or imageai (the lean install need not hold them).
- torch's (INFERENCE_RUNTIME=framework, or a GPU): ImageAI's own network and detection layers,
  then torch's kernels and torchvision's nms on the network's device (`candidates`, `suppress`):
  a GPU host runs no Python per candidate.

ImageAI's detection layers decode in place on `x.data`, outside anything a tracer sees, so a
converted whole network answers the same for every input. `HeadOutputs` is the network with
those layers swapped for taps that hand out their inputs (the raw head outputs): that part
converts. The converted-model cache records what those layers are made of (anchors, classes,
`layer_spec`), so a start from the cache decodes the raw outputs without ImageAI's network or
layers; each conversion checks that decoding against ImageAI's layers' own output.
"""
from __future__ import annotations

import copy

import numpy as np

from contract import InferenceOptions

YOLO_INPUT = 416
# The load check's input side (a multiple of the network's stride, 32): a start from the cache
# checks the compiled network on it. At 416 the check would be a full forward pass, a large part
# of a YOLOv3 start (docs/benchmarks.md in git history, at fec9c9d); the first call at 416 then costs a little more.
PROBE_SIDE = 128
OBJECTNESS = 0.5   # ImageAI ObjectDetection.__objectness_score
NMS_IOU = 0.4      # ImageAI ObjectDetection.__nms_score


# --- torch's path (INFERENCE_RUNTIME=framework, or a GPU) ----------------------------------------

def candidates(pred, num_classes: int):
    """Rows [image, x1, y1, x2, y2, objectness, class score, class id] (float32, on `pred`'s
    device) of every anchor past ImageAI's objectness gate, for a batch of network outputs
    [N, anchors, 5 + classes]: imageai.yolov3.utils.get_predictions' arithmetic, vectorised
    over the batch (its multiply-by-mask is a multiply by 1.0 on the rows it keeps, and it
    drops rows whose best class score is 0)."""
    import torch

    image, anchor = torch.nonzero(pred[..., 4] > OBJECTNESS, as_tuple=True)
    found = pred[image, anchor]
    corners = torch.stack([found[:, 0] - found[:, 2] / 2, found[:, 1] - found[:, 3] / 2,
                           found[:, 0] + found[:, 2] / 2, found[:, 1] + found[:, 3] / 2], 1)
    best, best_class = torch.max(found[:, 5:5 + num_classes], 1)
    rows = torch.cat([image.to(found.dtype).unsqueeze(1), corners, found[:, 4:5],
                      best.unsqueeze(1), best_class.to(found.dtype).unsqueeze(1)], 1)
    return rows[best != 0]


# ImageAI drops a box whose IoU with a kept one is >= 0.4 (in float32); torchvision's nms drops
# it when the IoU is > its threshold: the float32 just below 0.4 makes the two the same test.
_SUPPRESS_ABOVE = float(np.nextafter(np.float32(NMS_IOU), np.float32(0)))


def suppress(rows, num_classes: int):
    """Indices of the rows ImageAI's NMS keeps: per image and class, greedy by objectness, a box
    dropped at IoU >= 0.4 with a kept one, areas counted with ImageAI's +1 pixel. Returned per
    image, class ascending, each best first: ImageAI's order. torchvision's nms kernel runs on
    the rows' device; no Python runs per candidate."""
    import torch

    if rows.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=rows.device)
    groups = rows[:, 0].long() * num_classes + rows[:, 7].long()
    boxes = rows[:, 1:5].clone()
    boxes[:, 2:] += 1   # (x2 + 1) - x1 is ImageAI's x2 - x1 + 1
    # A box whose size overflowed to inf (never seen with trained weights) would make the GPU
    # path's offsets inf for every group: such a batch takes the per-class path. There, as in
    # torchvision, a NaN IoU suppresses nothing (ImageAI's `iou < 0.4` would suppress).
    if rows.device.type == "cpu" or not bool(torch.isfinite(boxes).all()):
        return _suppress_exactly(rows, groups, boxes)
    return _suppress_at_once(rows, groups, boxes)


def _suppress_exactly(rows, groups, boxes):
    """One nms call per image and class, in float32 and ordered by ImageAI's own `torch.sort`
    of that class's candidates: ImageAI's answer bit for bit, ties included (a CPU call costs
    ~80 us)."""
    import torch
    from torchvision.ops import nms

    kept = []
    for group in torch.unique(groups):
        members = torch.nonzero(groups == group).squeeze(1)
        members = members[torch.sort(rows[members, 5], descending=True)[1]]
        rank = torch.arange(len(members), 0, -1, dtype=boxes.dtype, device=boxes.device)
        kept.append(members[nms(boxes[members], rank, _SUPPRESS_ABOVE)])
    return torch.cat(kept)


def _suppress_at_once(rows, groups, boxes):
    """On a GPU, where each call is a launch and a wait: one nms call for every image and class,
    the groups moved apart (float64 keeps the offsets exact to far below a float32 ulp), each
    group in descending objectness, ties by candidate order."""
    import torch
    from torchvision.ops import nms

    order = torch.sort(rows[:, 5], descending=True, stable=True)[1]
    order = order[torch.sort(groups[order], stable=True)[1]]   # group ascending, best first in each
    boxes = boxes.double()
    span = float(boxes.max() - boxes.min()) + 1.0
    shifted = boxes[order] + (groups[order].double() * span).unsqueeze(1)
    rank = torch.arange(len(order), 0, -1, dtype=torch.float64, device=rows.device)
    kept = torch.sort(nms(shifted, rank, _SUPPRESS_ABOVE))[0]   # back to group order
    return order[kept]


# --- OpenVINO's network: the split before the detection layers, the conversion, its checks ------

def head_outputs(network):
    """(module, layers): `module(x)` returns the raw inputs of the network's detection layers,
    in the order the network runs them, and `layers` are those detection layers in that order.
    The module shares the network's layers and weights (nothing is copied)."""
    import torch
    from imageai.yolov3.yolov3 import DetectionLayer

    class Tap(torch.nn.Module):
        def __init__(self, layer, sink):
            super().__init__()
            self.sink, self.layer = [sink], [layer]   # lists: not registered as submodules

        def forward(self, x):
            self.sink[0].append((self.layer[0], x))
            return x.flatten(2).transpose(1, 2)   # any tensor the network can concatenate

    class HeadOutputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.taken: list = []
            body = copy.copy(network)
            body._modules = {name: Tap(child, self.taken) if isinstance(child, DetectionLayer) else child
                             for name, child in network._modules.items()}
            self.body = body

        def forward(self, x):
            self.taken.clear()
            self.body(x)
            return tuple(raw for _, raw in self.taken)

    module = HeadOutputs().eval()
    with torch.no_grad():
        module(torch.zeros(1, 3, YOLO_INPUT, YOLO_INPUT))
    return module, [layer for layer, _ in module.taken]


def compile_heads(network, key: str, models_dir, options: InferenceOptions):
    """(compiled network, the detection layers' specs): the head outputs compiled by OpenVINO
    for any batch and input size, checked on a PROBE_SIDE probe against the answer recorded at
    conversion: the raw head outputs, and the network's whole output (`decode_heads`, from what
    the cache entry records, against ImageAI's own detection layers). A conversion is also
    checked once at YOLO_INPUT before it is cached. `network()` gives ImageAI's loaded network;
    it is called (and torch imported) only where the converted-model cache has no valid entry."""
    from runtimes import openvino

    probe = _probe(PROBE_SIDE)

    def answers(compiled, batch=probe):
        raw = compiled(batch)
        return [*raw, decode_heads(compiled.details["layers"], raw)]

    conversion = openvino.Conversion(
        # Any batch size: a micro-batch is one call, a little faster than one call per image,
        # and one image costs the same as on a batch-1 network. Any input size, for the small
        # load check: serving at 416 costs the same as on a network compiled for 416 only
        # (docs/benchmarks.md in git history, at fec9c9d, has the measurements).
        key=key, probe=answers, source=lambda: _source(network(), key, probe, answers),
        input_shapes=[[-1, 3, -1, -1]])
    compiled = openvino.compile_network(conversion, models_dir, options)
    return compiled, compiled.details["layers"]


def _source(loaded, key: str, probe: np.ndarray, answers):
    """What a conversion starts from: ImageAI's loaded network split before its detection layers,
    and torch's answers (the raw head outputs, and the output ImageAI's own layers decode)."""
    import torch

    from runtimes import openvino

    module, layers = head_outputs(loaded)

    def expected(batch):
        with torch.no_grad():
            raw = [out.numpy() for out in module(torch.from_numpy(batch))]
            return [*raw, loaded(torch.from_numpy(batch)).numpy()]   # decoded by ImageAI's own layers

    def at_serving_size(compiled):
        """Once per conversion: the input size every request is letterboxed to."""
        batch = _probe(YOLO_INPUT, seed=7)
        for got, wanted in zip(answers(compiled, batch), expected(batch), strict=True):
            openvino.Expected.of(wanted).check(openvino.model_of(key), got)

    return openvino.Source(
        expected=expected(probe), details={"layers": [layer_spec(layer) for layer in layers]},
        verify=at_serving_size,
        convert=lambda: openvino.convert(module, example_input=torch.zeros(1, 3, YOLO_INPUT, YOLO_INPUT)))


def _probe(side: int, seed: int = 20261122) -> np.ndarray:
    from runtimes import openvino

    return openvino.probe_batch(side, side, count=1, seed=seed).transpose(0, 3, 1, 2) / np.float32(255)


def layer_spec(layer) -> dict:
    """What an ImageAI DetectionLayer computes with, as JSON: its anchors (w, h in input
    pixels), its number of classes and the input side it scales to."""
    return {"anchors": layer.anchors.tolist(), "num_classes": int(layer.num_classes), "width": int(layer.width)}


# --- OpenVINO's path: the steps after the network in numpy ---------------------------------------

def decode_heads(specs: list[dict], raw_outputs) -> np.ndarray:
    """The network's own output [N, anchors, 5 + classes] (float32) from its raw head outputs,
    for any batch: each detection layer (`layer_spec`'s) decoding as ImageAI's DetectionLayer
    does (imageai.yolov3.utils.transform_prediction), in numpy, without ImageAI or torch."""
    return np.concatenate([_decoded(spec, raw) for spec, raw in zip(specs, raw_outputs, strict=True)], 1)


def _decoded(spec: dict, raw) -> np.ndarray:
    """One detection layer: sigmoid of x, y, objectness and class scores, plus the cell's
    offsets; exp of w, h times the anchors; x, y, w, h scaled by the stride. Computed on the
    raw layout (each attribute of each anchor contiguous over the cells), then rows ordered cell
    by cell (row-major), each cell's anchors in turn, as ImageAI's view and transpose order
    them. The stride is the layer's configured side over the grid's rows, as ImageAI computes it
    (not the input's side: at the load check's 128 probe, 416 // 4)."""
    raw = np.asarray(raw, np.float32)
    batch, _, height, width = raw.shape
    anchors = np.asarray(spec["anchors"], np.float32)
    attrs, cells = 5 + spec["num_classes"], height * width
    stride = np.float32(spec["width"] // height)
    # A copy: the raw outputs stay as they were (the load check compares them too).
    pred = np.array(raw.reshape(batch, len(anchors), attrs, cells))
    with np.errstate(over="ignore"):   # an exp past float32's range is inf, as torch's is
        _sigmoid(pred[:, :, 0:2])
        _sigmoid(pred[:, :, 4:])
        np.exp(pred[:, :, 2:4], out=pred[:, :, 2:4])
    cell = np.arange(cells)
    pred[:, :, 0] += (cell % width).astype(np.float32)
    pred[:, :, 1] += (cell // width).astype(np.float32)
    pred[:, :, 2:4] *= (anchors / stride)[None, :, :, None]
    pred[:, :, 0:4] *= stride
    return pred.transpose(0, 3, 1, 2).reshape(batch, cells * len(anchors), attrs)


def _sigmoid(values: np.ndarray) -> None:
    """In place, torch.sigmoid's float32 arithmetic: 1 / (1 + exp(-x)) (0 where exp(-x) is inf)."""
    np.negative(values, out=values)
    np.exp(values, out=values)
    values += np.float32(1)
    np.divide(np.float32(1), values, out=values)


def candidates_np(pred: np.ndarray, num_classes: int) -> np.ndarray:
    """`candidates` in numpy: rows [image, x1, y1, x2, y2, objectness, class score, class id]
    (float32) of every anchor past ImageAI's objectness gate whose best class score is not 0, in
    image and anchor order; the best class is the first of equal scores, as torch.max picks."""
    image, anchor = np.nonzero(pred[..., 4] > np.float32(OBJECTNESS))
    found = pred[image, anchor]
    scores = found[:, 5:5 + num_classes]
    best_class = scores.argmax(1)
    best = scores[np.arange(len(found)), best_class]
    half_w, half_h = found[:, 2] / np.float32(2), found[:, 3] / np.float32(2)
    rows = np.empty((len(found), 8), np.float32)
    rows[:, 0] = image
    rows[:, 1], rows[:, 2] = found[:, 0] - half_w, found[:, 1] - half_h
    rows[:, 3], rows[:, 4] = found[:, 0] + half_w, found[:, 1] + half_h
    rows[:, 5], rows[:, 6], rows[:, 7] = found[:, 4], best, best_class
    return rows[best != 0]


_NMS_IOU32 = np.float32(NMS_IOU)   # ImageAI compares its float32 IoU with 0.4 as a float32
_PAIRS_AT_ONCE = 1 << 20   # box pairs whose IoU is computed in one go (bounded memory in a crowd)


def suppress_np(rows: np.ndarray, num_classes: int) -> np.ndarray:
    """`suppress` in numpy: indices of the rows ImageAI's NMS keeps, per image and class, greedy
    by objectness, a box dropped at IoU >= 0.4 with a kept one (ImageAI's +1-pixel arithmetic, in
    float32); returned per image, class ascending, each best first. Equal objectness keeps the
    candidates' order: ImageAI's torch.sort is not stable, so its order among exactly equal
    float32 scores is whatever its sort kernel leaves."""
    if len(rows) == 0:
        return np.zeros(0, np.int64)
    groups = rows[:, 0].astype(np.int64) * num_classes + rows[:, 7].astype(np.int64)
    order = np.argsort(-rows[:, 5], kind="stable")
    order = order[np.argsort(groups[order], kind="stable")]   # group ascending, best first in each
    starts = np.flatnonzero(np.diff(groups[order], prepend=-1))
    keep = np.ones(len(order), bool)
    for start, stop in zip(starts, [*starts[1:], len(order)]):
        if stop - start > 1:
            keep[start:stop] = _greedy(rows[order[start:stop], 1:5])
    return order[keep]


def _greedy(boxes: np.ndarray) -> np.ndarray:
    """Which of one group's boxes (best first) the greedy NMS keeps: each box still kept, in
    turn, drops the later ones it overlaps at IoU >= 0.4. A NaN IoU (two boxes of infinite size)
    suppresses nothing, as in torchvision's nms (ImageAI's `iou < 0.4` would suppress)."""
    corners = np.ascontiguousarray(boxes.T)   # x1, y1, x2, y2 each contiguous: numpy's fast loops
    earlier, later = [], []
    for a, b in _neighbours(corners):
        hit = _iou(np.take(corners, a, 1), np.take(corners, b, 1)) >= _NMS_IOU32
        earlier.append(np.minimum(a[hit], b[hit]))
        later.append(np.maximum(a[hit], b[hit]))
    earlier, later = np.concatenate(earlier), np.concatenate(later)
    by_earlier = np.argsort(earlier, kind="stable")
    earlier, later = earlier[by_earlier], later[by_earlier]
    starts = np.flatnonzero(np.diff(earlier, prepend=-1)).tolist()
    alive = np.ones(len(boxes), bool)
    for start, stop in zip(starts, [*starts[1:], len(earlier)]):
        if alive[earlier[start]]:
            alive[later[start:stop]] = False
    return alive


def _neighbours(corners: np.ndarray):
    """Pairs (i, j) of the boxes that may overlap, in chunks of at most about _PAIRS_AT_ONCE:
    along x, each box with the boxes whose left edge lies from its own to its right edge + 2 px,
    of those the pairs as near along y. Boxes further apart have IoU 0 (ImageAI's +1 pixel; 2
    leaves room for float32 rounding), so only these pairs' IoUs are computed, not all n * n."""
    by_x = np.argsort(corners[0], kind="stable")
    position = np.arange(len(by_x))
    reach = np.searchsorted(corners[0, by_x], corners[2, by_x] + np.float32(2), side="right")
    counts = np.maximum(reach - position - 1, 0)
    firsts = np.cumsum(counts) - counts   # where each box's pairs begin in the list of all pairs
    top, bottom = corners[1], corners[3] + np.float32(2)
    start = 0
    while start < len(by_x):
        stop = max(start + 1, int(np.searchsorted(firsts, firsts[start] + _PAIRS_AT_ONCE, side="right")))
        rows = np.repeat(position[start:stop], counts[start:stop])
        partners = rows + 1 + np.arange(len(rows)) - np.repeat(firsts[start:stop] - firsts[start], counts[start:stop])
        a, b = by_x[rows], by_x[partners]
        near = (np.take(top, b) <= np.take(bottom, a)) & (np.take(top, a) <= np.take(bottom, b))
        yield a[near], b[near]
        start = stop


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The IoUs of boxes a[:, k] and b[:, k] (rows x1, y1, x2, y2) by imageai.yolov3.utils.
    bbox_iou's float32 arithmetic (+1 pixel)."""
    one, zero = np.float32(1), np.float32(0)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):   # inf sizes give inf or NaN
        low = np.maximum(a[0], b[0])
        inter = np.minimum(a[2], b[2])
        inter -= low
        inter += one
        np.maximum(inter, zero, out=inter)
        np.maximum(a[1], b[1], out=low)
        high = np.minimum(a[3], b[3])
        high -= low
        high += one
        np.maximum(high, zero, out=high)
        inter *= high
        union = np.add((a[2] - a[0] + one) * (a[3] - a[1] + one), (b[2] - b[0] + one) * (b[3] - b[1] + one),
                       out=high)
        union -= inter
        return np.divide(inter, union, out=inter)


def rescaled_np(rows: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """`rows` (in place) from the letterboxed input's pixels to their image's, clipped to it,
    by detectObjectsFromImage's float32 arithmetic; `sizes` [images, (width, height)] float32."""
    side = np.float32(YOLO_INPUT)
    dims = sizes[rows[:, 0].astype(np.int64)]
    scaling = np.min(side / dims, 1, keepdims=True)
    rows[:, [1, 3]] -= (side - scaling * dims[:, 0:1]) / np.float32(2)
    rows[:, [2, 4]] -= (side - scaling * dims[:, 1:2]) / np.float32(2)
    rows[:, 1:5] /= scaling
    rows[:, [1, 3]] = np.clip(rows[:, [1, 3]], np.float32(0), dims[:, 0:1])
    rows[:, [2, 4]] = np.clip(rows[:, [2, 4]], np.float32(0), dims[:, 1:2])
    return rows


# --- both paths ----------------------------------------------------------------------------------

_GREY = np.float32(128) / np.float32(255)   # ImageAI's padding, as its float division gives it


def letterboxed(rgb: np.ndarray) -> np.ndarray:
    """ImageAI's network input [1, 3, 416, 416] (float32, numpy) for an RGB image, bit for bit
    its `prepare_image` of the BGR array its YOLO path expects. That letterboxes the BGR pixels
    (cv2 cubic resize onto an int64 canvas of 128), flips them back to RGB and divides by 255 in
    float32. The resize treats the channels alike, so the two flips cancel: the same resize of
    the RGB pixels, divided the same way, gives the same input without the full-size BGR copy
    (a third of the step for a 12 MP photo) and the int64 canvas."""
    import cv2

    height, width = rgb.shape[:2]
    scale = min(YOLO_INPUT / width, YOLO_INPUT / height)
    # At least one pixel: ImageAI's own letterbox fails on a 2000x1 image (a resize to 0 rows).
    new_w, new_h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((3, YOLO_INPUT, YOLO_INPUT), _GREY, dtype=np.float32)
    top, left = (YOLO_INPUT - new_h) // 2, (YOLO_INPUT - new_w) // 2
    canvas[:, top:top + new_h, left:left + new_w] = resized.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    return canvas[None]


def detect(forward, classes: list[str], rgbs: list[np.ndarray], min_score: float) -> list[list[tuple]]:
    """Per image, (label, score, [x1, y1, x2, y2]) as ImageAI's detectObjectsFromImage reports
    them, for a batch of RGB images in one network call. `forward` maps the stacked letterboxed
    inputs (numpy) to the network's output: a numpy array (OpenVINO's path: the steps after it
    in numpy) or a torch tensor (torch's path: they run on its device, and one copy brings the
    kept rows back)."""
    pred = forward(np.concatenate([letterboxed(rgb) for rgb in rgbs]))
    sizes = [(rgb.shape[1], rgb.shape[0]) for rgb in rgbs]
    if isinstance(pred, np.ndarray):
        rows = candidates_np(pred, len(classes))
        rows = rescaled_np(rows[suppress_np(rows, len(classes))], np.asarray(sizes, np.float32))
    else:
        rows = _on_device(pred, len(classes), sizes)
    found: list[list[tuple]] = [[] for _ in rgbs]
    for image, x1, y1, x2, y2, _, score, label in rows.tolist():   # Python floats: the float32 values
        if score >= min_score:
            found[int(image)].append((classes[int(label)], score, [int(x1), int(y1), int(x2), int(y2)]))
    return found


def _on_device(pred, num_classes: int, sizes: list[tuple[int, int]]) -> np.ndarray:
    """torch's path: candidates, NMS, rescaling and clipping exactly as detectObjectsFromImage
    does, each row by its image's size, on the network's device; the kept rows as numpy."""
    import torch

    rows = candidates(pred, num_classes)
    rows = rows[suppress(rows, num_classes)]
    sizes = torch.tensor(sizes, dtype=rows.dtype, device=rows.device)
    input_dims = sizes[rows[:, 0].long()].repeat(1, 2)
    scaling = torch.min(YOLO_INPUT / input_dims, 1)[0].view(-1, 1)
    rows[:, [1, 3]] -= (YOLO_INPUT - (scaling * input_dims[:, 0].view(-1, 1))) / 2
    rows[:, [2, 4]] -= (YOLO_INPUT - (scaling * input_dims[:, 1].view(-1, 1))) / 2
    rows[:, 1:5] /= scaling
    zero = torch.zeros((), dtype=rows.dtype, device=rows.device)
    rows[:, [1, 3]] = torch.clamp(rows[:, [1, 3]], zero, input_dims[:, 0:1])
    rows[:, [2, 4]] = torch.clamp(rows[:, [2, 4]], zero, input_dims[:, 1:2])
    return rows.cpu().numpy()
