"""RetinaNet (torchvision's, as ImageAI loads it) with OpenVINO running its backbone, feature
pyramid and heads: the convolutions. torchvision's own transform (normalise, resize, pad),
anchors, box decoding, score threshold, NMS and rescaling stay in torch, called exactly as
`RetinaNet.forward` calls them in evaluation mode.

The dense part takes any padded input size (the transform resizes each image to its own
size), so it is converted with dynamic height and width. Besides the two head outputs it
returns one channel of each pyramid level: the anchor generator reads only their sizes.

Around the converted part, a `skeleton()` of torchvision's network supplies those steps: the
network built as ImageAI builds it, but without weights, so a start from the converted-model
cache neither reads the weights file nor initialises 34 million random parameters to
overwrite them (building ImageAI's network took as long as torch's whole start).
"""
from __future__ import annotations

import warnings

import numpy as np

from contract import InferenceOptions

# The input the load-time check runs at: a small padded size (multiples of 32, as the transform
# pads). The dense part takes any size, and a check at the transform's ~800x1066 would cost a
# large part of a start (docs/benchmarks.md in git history, at fec9c9d). A conversion is also
# checked once at serving size.
PROBE_SIZE = (128, 128)


def skeleton():
    """torchvision's RetinaNet as ImageAI 3.0.3 builds it (`retinanet_resnet50_fpn`, 91
    classes), its layers on the meta device (no memory, no initialisation) and its anchor
    generator made again on the CPU (its cell anchors are tensors made at construction). Its
    transform, anchors, box decoding, thresholds and NMS are the loaded network's (a test
    compares their settings); its layers cannot run."""
    import torch
    import torchvision
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        network = torchvision.models.detection.retinanet_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=91)
    anchors = network.anchor_generator
    network.anchor_generator = AnchorGenerator(anchors.sizes, anchors.aspect_ratios)
    return network.eval()


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


def detections(network, dense, tensor):
    """network([tensor])[0] for one RGB CHW 0-1 tensor, with `dense` (numpy in, numpy out)
    computing the convolutions: RetinaNet.forward's evaluation branch, step by step."""
    import torch

    with torch.no_grad():
        original_sizes = [tuple(tensor.shape[-2:])]
        images, _ = network.transform([tensor])
        cls_logits, bbox_regression, *levels = (torch.from_numpy(np.asarray(o))
                                                for o in dense(images.tensors.numpy()))
        anchors = network.anchor_generator(images, levels)
        per_level = [level.size(2) * level.size(3) for level in levels]
        per_anchor = cls_logits.size(1) // sum(per_level)
        per_level = [count * per_anchor for count in per_level]
        outputs = {"cls_logits": list(cls_logits.split(per_level, dim=1)),
                   "bbox_regression": list(bbox_regression.split(per_level, dim=1))}
        split_anchors = [list(a.split(per_level)) for a in anchors]
        found = network.postprocess_detections(outputs, split_anchors, images.image_sizes)
        return network.transform.postprocess(found, images.image_sizes, original_sizes)[0]


def compile_dense(network, parts, key: str, models_dir, options: InferenceOptions):
    """The dense part compiled by OpenVINO with a dynamic input size, checked against torch.
    `network()` gives ImageAI's loaded network (called only where the converted-model cache has
    no valid entry); `parts` is its skeleton, whose transform makes the probe."""
    import torch

    from runtimes import openvino

    height, width = PROBE_SIZE
    image = torch.from_numpy(openvino.probe_batch(height, width, count=1)[0]).permute(2, 0, 1) / 255
    batch = parts.transform.normalize(image).unsqueeze(0)   # as the transform normalises

    def source():
        module = dense_part(network())
        with torch.no_grad():
            expected = [o.numpy() for o in module(batch)]

        def at_serving_size(compiled):
            """Once per conversion: the size the transform gives a 640x480 photo (~800x1088)."""
            photo = torch.from_numpy(openvino.probe_batch(480, 640, count=1, seed=7)[0]).permute(2, 0, 1) / 255
            with torch.no_grad():
                large = parts.transform([photo])[0].tensors
                wanted = [o.numpy() for o in module(large)]
            for got, output in zip(compiled(large.numpy()), wanted, strict=True):
                openvino.Expected.of(output).check(key.split("-")[0], got)

        return openvino.Source(expected=expected, verify=at_serving_size,
                               convert=lambda: openvino.convert(module, example_input=batch))

    conversion = openvino.Conversion(
        key=key, probe=lambda compiled: compiled(batch.numpy()), source=source,
        input_shapes=[[1, 3, -1, -1]])
    return openvino.compile_network(conversion, models_dir, options)
