"""ImageAI's YOLO post-processing without its per-box Python loop, with identical results,
for a batch of images in one network call, and the network split before its detection layers
so OpenVINO can run the convolutions.

Measured with `python -m bench` (docs/benchmarks.md in git history, at fec9c9d): ImageAI's
`detectObjectsFromImage` spent several times the network's forward pass outside it: converting
and copying the full image twice, drawing every box on it, and running non-maximum suppression
one box at a time through torch calls. This module keeps ImageAI's own network, letterbox (`prepare_image`)
and arithmetic, stacks the letterboxed images of a micro-batch into one network call, and
replaces the loop with the same greedy algorithm in torchvision's nms kernel, on the network's
device (a GPU host runs no Python per candidate): same thresholds (objectness 0.5, IoU 0.4),
same +1-pixel box areas, same order (ImageAI's own sort by objectness), same rescaling. Tests
compare it with ImageAI's `detectObjectsFromImage` box for box on thousands of candidate boxes,
and a batch with the same images one at a time.

ImageAI's detection layers decode in place on `x.data`, outside anything a tracer sees, so a
converted whole network answers the same for every input. `HeadOutputs` is the network with
those layers swapped for taps that hand out their inputs (the raw head outputs): that part
converts; the detection layers themselves then decode the raw outputs, unchanged. The
converted-model cache records what those layers are made of (anchors, classes), so a start
from the cache makes ImageAI's own DetectionLayer objects again without loading the network.
"""
from __future__ import annotations

import copy

import numpy as np

from contract import InferenceOptions

YOLO_INPUT = 416
# The load check's input side (a multiple of the network's stride, 32): a start from the cache
# checks the compiled network on it. At 416 the check would be a full forward pass, a large part
# of a YOLOv3 start (docs/benchmarks.md in git history, at fec9c9d); the first call at 416 then
# costs a little more.
PROBE_SIDE = 128
OBJECTNESS = 0.5   # ImageAI ObjectDetection.__objectness_score
NMS_IOU = 0.4      # ImageAI ObjectDetection.__nms_score


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
    """(compiled network, detection layers): the head outputs compiled by OpenVINO for any
    batch and input size, checked against torch on a PROBE_SIDE probe: the raw head outputs, and
    the network's whole output (the detection layers, made from what the cache entry records,
    decoding the compiled heads' outputs); a conversion is also checked once at YOLO_INPUT
    before it is cached. `network()` gives ImageAI's loaded network; it is called only where
    the converted-model cache has no valid entry."""
    import torch

    from runtimes import openvino

    probe = _probe(PROBE_SIDE)

    def source():
        loaded = network()
        module, layers = head_outputs(loaded)

        def expected(batch):
            with torch.no_grad():
                raw = [out.numpy() for out in module(torch.from_numpy(batch))]
                return [*raw, loaded(torch.from_numpy(batch)).numpy()]   # decoded by ImageAI's own layers

        def at_serving_size(compiled):
            """Once per conversion: the input size every request is letterboxed to."""
            batch = _probe(YOLO_INPUT, seed=7)
            for got, wanted in zip(answers(compiled, batch), expected(batch), strict=True):
                openvino.Expected.of(wanted).check(key.split("-")[0], got)

        return openvino.Source(
            expected=expected(probe), details={"layers": [layer_spec(layer) for layer in layers]},
            verify=at_serving_size,
            convert=lambda: openvino.convert(module, example_input=torch.zeros(1, 3, YOLO_INPUT, YOLO_INPUT)))

    def answers(compiled, batch=probe):
        raw = compiled(batch)
        layers = [detection_layer(spec) for spec in compiled.details["layers"]]
        return [*raw, decode_heads(layers, raw).numpy()]

    conversion = openvino.Conversion(
        # Any batch size: a micro-batch is one call, a little faster than one call per image,
        # and one image costs the same as on a batch-1 network. Any input size, for the small
        # load check: serving at 416 costs the same as on a network compiled for 416 only
        # (docs/benchmarks.md in git history, at fec9c9d, has the measurements).
        key=key, probe=answers, source=source, input_shapes=[[-1, 3, -1, -1]])
    compiled = openvino.compile_network(conversion, models_dir, options)
    return compiled, [detection_layer(spec) for spec in compiled.details["layers"]]


def _probe(side: int, seed: int = 20261122) -> np.ndarray:
    from runtimes import openvino

    return openvino.probe_batch(side, side, count=1, seed=seed).transpose(0, 3, 1, 2) / np.float32(255)


def layer_spec(layer) -> dict:
    """What an ImageAI DetectionLayer computes with, as JSON: its anchors (w, h in input
    pixels), its number of classes and the input side it scales to."""
    return {"anchors": layer.anchors.tolist(), "num_classes": int(layer.num_classes), "width": int(layer.width)}


def detection_layer(spec: dict):
    """ImageAI's DetectionLayer with the anchors and classes of `spec` (layer_spec's), on the CPU."""
    from imageai.yolov3.yolov3 import DetectionLayer

    anchors = [side for pair in spec["anchors"] for side in pair]
    layer = DetectionLayer(anchors=anchors, anchor_masks=tuple(range(len(spec["anchors"]))), layer=0,
                           num_classes=spec["num_classes"], device="cpu").eval()
    layer.width = layer.height = spec["width"]
    return layer


def decode_heads(layers, raw_outputs):
    """ImageAI's detection layers applied to the raw head outputs (any batch size): the
    network's own output."""
    import torch

    with torch.no_grad():
        return torch.cat([layer(torch.as_tensor(raw)) for layer, raw in zip(layers, raw_outputs)], 1)


_GREY = np.float32(128) / np.float32(255)   # ImageAI's padding, as its float division gives it


def letterboxed(rgb: np.ndarray):
    """ImageAI's network input for an RGB image, bit for bit its `prepare_image` of the BGR
    array its YOLO path expects. That letterboxes the BGR pixels (cv2 cubic resize onto an
    int64 canvas of 128), flips them back to RGB and divides by 255 in float32. The resize
    treats the channels alike, so the two flips cancel: the same resize of the RGB pixels,
    divided the same way, gives the same tensor without the full-size BGR copy (a third of
    the step for a 12 MP photo) and the int64 canvas."""
    import cv2
    import torch

    height, width = rgb.shape[:2]
    scale = min(YOLO_INPUT / width, YOLO_INPUT / height)
    # At least one pixel: ImageAI's own letterbox fails on a 2000x1 image (a resize to 0 rows).
    new_w, new_h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((3, YOLO_INPUT, YOLO_INPUT), _GREY, dtype=np.float32)
    top, left = (YOLO_INPUT - new_h) // 2, (YOLO_INPUT - new_w) // 2
    canvas[:, top:top + new_h, left:left + new_w] = resized.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    return torch.from_numpy(canvas).unsqueeze(0)


def detect(forward, classes: list[str], rgbs: list[np.ndarray], min_score: float) -> list[list[tuple]]:
    """Per image, (label, score, [x1, y1, x2, y2]) as ImageAI's detectObjectsFromImage reports
    them, for a batch of RGB images in one network call. `forward` maps the stacked letterboxed
    inputs to the network's output, on the network's device: candidates, NMS and rescaling run
    there, and one copy brings the kept rows back."""
    import torch

    inputs = torch.cat([letterboxed(rgb) for rgb in rgbs])
    pred = forward(inputs)
    rows = candidates(pred, len(classes))
    rows = rows[suppress(rows, len(classes))]
    # Rescaling and clipping exactly as detectObjectsFromImage does, each row by its image's size.
    sizes = torch.tensor([(rgb.shape[1], rgb.shape[0]) for rgb in rgbs], dtype=rows.dtype, device=rows.device)
    input_dims = sizes[rows[:, 0].long()].repeat(1, 2)
    scaling = torch.min(YOLO_INPUT / input_dims, 1)[0].view(-1, 1)
    rows[:, [1, 3]] -= (YOLO_INPUT - (scaling * input_dims[:, 0].view(-1, 1))) / 2
    rows[:, [2, 4]] -= (YOLO_INPUT - (scaling * input_dims[:, 1].view(-1, 1))) / 2
    rows[:, 1:5] /= scaling
    zero = torch.zeros((), dtype=rows.dtype, device=rows.device)
    rows[:, [1, 3]] = torch.clamp(rows[:, [1, 3]], zero, input_dims[:, 0:1])
    rows[:, [2, 4]] = torch.clamp(rows[:, [2, 4]], zero, input_dims[:, 1:2])
    found: list[list[tuple]] = [[] for _ in rgbs]
    for row in rows.cpu().numpy():
        score = float(row[6])
        if score >= min_score:
            found[int(row[0])].append((classes[int(row[7])], score, [int(v) for v in row[1:5]]))
    return found
