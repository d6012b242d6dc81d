"""ImageAI's YOLO post-processing without its per-box Python loop, with identical results,
and the network split before its detection layers so OpenVINO can run the convolutions.

Measured with `python -m bench`: ImageAI's `detectObjectsFromImage` spent 2.8x (TinyYOLOv3)
and 3.4x (YOLOv3) the network's forward pass outside it: converting and copying the full
image twice, drawing every box on it, and running non-maximum suppression one box at a time
through torch calls. This module keeps ImageAI's own network, letterbox (`prepare_image`)
and arithmetic, and replaces only that loop with the same greedy algorithm over numpy
float32 arrays: same thresholds (objectness 0.5, IoU 0.4), same +1-pixel box areas, same
order (torch's own sort by objectness), same rescaling. A test compares it with ImageAI's
`detectObjectsFromImage` box for box on thousands of candidate boxes.

ImageAI's detection layers decode in place on `x.data`, outside anything a tracer sees, so a
converted whole network answers the same for every input. `HeadOutputs` is the network with
those layers swapped for taps that hand out their inputs (the raw head outputs): that part
converts; the detection layers themselves then decode the raw outputs, unchanged.
"""
from __future__ import annotations

import copy

import numpy as np

YOLO_INPUT = 416
OBJECTNESS = 0.5   # ImageAI ObjectDetection.__objectness_score
NMS_IOU = 0.4      # ImageAI ObjectDetection.__nms_score


def _suppress(rows: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS over rows already sorted best first; columns x1, y1, x2, y2 (float32).
    The IoU is computed exactly as imageai.yolov3.utils.bbox_iou does, in float32."""
    keep = []
    alive = np.ones(len(rows), dtype=bool)
    one = np.float32(1)
    zero = np.float32(0)
    for i in range(len(rows)):
        if not alive[i]:
            continue
        keep.append(i)
        rest = np.nonzero(alive[i + 1:])[0] + i + 1
        if rest.size == 0:
            break
        b1, b2 = rows[i], rows[rest]
        inter_w = np.maximum(np.minimum(b1[2], b2[:, 2]) - np.maximum(b1[0], b2[:, 0]) + one, zero)
        inter_h = np.maximum(np.minimum(b1[3], b2[:, 3]) - np.maximum(b1[1], b2[:, 1]) + one, zero)
        inter = inter_w * inter_h
        area1 = (b1[2] - b1[0] + one) * (b1[3] - b1[1] + one)
        area2 = (b2[:, 2] - b2[:, 0] + one) * (b2[:, 3] - b2[:, 1] + one)
        iou = inter / (area1 + area2 - inter)
        alive[rest[~(iou < threshold)]] = False
    return np.asarray(keep, dtype=np.int64)


def get_predictions(pred, num_classes: int):
    """imageai.yolov3.utils.get_predictions for one image, with the NMS loop in numpy.
    Returns a float32 tensor of rows [0, x1, y1, x2, y2, objectness, class score, class id],
    classes in ascending order, each best first; or None."""
    import torch

    pred = pred[0]
    mask = (pred[:, 4] > OBJECTNESS).float().unsqueeze(1)
    pred = pred * mask
    corners = pred.new(pred.shape)
    corners[:, 0] = pred[:, 0] - pred[:, 2] / 2
    corners[:, 1] = pred[:, 1] - pred[:, 3] / 2
    corners[:, 2] = pred[:, 0] + pred[:, 2] / 2
    corners[:, 3] = pred[:, 1] + pred[:, 3] / 2
    pred[:, :4] = corners[:, :4]
    max_conf, max_idx = torch.max(pred[:, 5:5 + num_classes], 1)
    rows = torch.cat([pred[:, :5], max_conf.float().unsqueeze(1), max_idx.float().unsqueeze(1)], 1)
    rows = rows[torch.nonzero(rows[:, 4]).squeeze(1)]
    if rows.shape[0] == 0:
        return None
    kept = []
    for cls in torch.unique(rows[:, -1]):
        of_class = rows * (rows[:, -1] == cls).float().unsqueeze(1)
        of_class = rows[torch.nonzero(of_class[:, -2]).squeeze(1)]
        order = torch.sort(of_class[:, 4], descending=True)[1]
        of_class = of_class[order]
        keep = _suppress(of_class[:, :4].numpy(), NMS_IOU)
        kept.append(of_class[torch.from_numpy(keep)])
    out = torch.cat(kept)
    return torch.cat([out.new_zeros(out.shape[0], 1), out], 1)


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


def compile_heads(network, key: str, models_dir, precision: str):
    """(compiled network, detection layers): the head outputs compiled by OpenVINO, checked
    against torch on a probe input."""
    import torch

    from runtimes import openvino

    module, layers = head_outputs(network)
    probe = openvino.probe_batch(YOLO_INPUT, YOLO_INPUT, count=1).transpose(0, 3, 1, 2) / np.float32(255)
    with torch.no_grad():
        expected = [raw.numpy() for raw in module(torch.from_numpy(probe))]

    def check(compiled):
        for got, wanted in zip(compiled(probe), expected, strict=True):
            scale = max(1.0, float(np.abs(wanted).max()))   # raw outputs are not bounded
            openvino.check_close(key.split("-")[0], got / scale, wanted / scale)

    conversion = openvino.Conversion(
        key=key, check=check, input_shapes=[[1, 3, YOLO_INPUT, YOLO_INPUT]],
        convert=lambda: openvino.convert(module, example_input=torch.zeros(1, 3, YOLO_INPUT, YOLO_INPUT)))
    return openvino.compile_network(conversion, models_dir, precision), layers


def decode_heads(layers, raw_outputs):
    """ImageAI's detection layers applied to the raw head outputs: the network's own output."""
    import torch

    with torch.no_grad():
        return torch.cat([layer(torch.as_tensor(raw)) for layer, raw in zip(layers, raw_outputs)], 1)


def letterboxed(rgb: np.ndarray):
    """ImageAI's network input for an RGB image: its own letterbox, on the BGR order it expects."""
    from imageai.yolov3.utils import prepare_image

    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    return prepare_image(bgr, (YOLO_INPUT, YOLO_INPUT))


def detect(forward, classes: list[str], rgb: np.ndarray, min_score: float):
    """(label, score, [x1, y1, x2, y2]) as ImageAI's detectObjectsFromImage reports them.
    `forward` maps the letterboxed input tensor to the network's output on the CPU."""
    import torch

    height, width = rgb.shape[:2]
    output = get_predictions(forward(letterboxed(rgb)), len(classes))
    if output is None:
        return []
    # Rescaling and clipping exactly as detectObjectsFromImage does.
    input_dims = torch.FloatTensor([(width, height)]).repeat(1, 2)
    input_dims = torch.index_select(input_dims, 0, output[:, 0].long())
    scaling = torch.min(YOLO_INPUT / input_dims, 1)[0].view(-1, 1)
    output[:, [1, 3]] -= (YOLO_INPUT - (scaling * input_dims[:, 0].view(-1, 1))) / 2
    output[:, [2, 4]] -= (YOLO_INPUT - (scaling * input_dims[:, 1].view(-1, 1))) / 2
    output[:, 1:5] /= scaling
    # One image: every row clips to the same bounds (ImageAI clamps row by row).
    output[:, [1, 3]] = torch.clamp(output[:, [1, 3]], 0.0, float(width))
    output[:, [2, 4]] = torch.clamp(output[:, [2, 4]], 0.0, float(height))
    rows = output.numpy()
    return [(classes[int(row[-1])], float(row[-2]), [int(v) for v in row[1:5]])
            for row in rows if float(row[-2]) >= min_score]
