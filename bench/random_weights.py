"""Weight files of the real architectures with random weights, under the official names
(for the tests and for benchmarks where the published files cannot be downloaded).

The service's real loading code then reads them exactly as it reads the published files.
Keras models get their BatchNorm statistics calibrated layer by layer on a small batch, so
their outputs depend on the input (plain random weights give nearly the same answer for every
image, and a parity test on them would prove nothing).

Detectors come in two kinds. Plain random weights (the default: the tests' stress case) pass
thousands of candidates through ImageAI's objectness gate, where real weights pass a handful,
so NMS dominates every timing. With `candidates=K` the BatchNorm statistics are calibrated
and the objectness (YOLO) or class (RetinaNet) biases shifted so an image yields about K
candidates above the gate: what a benchmark of a deployment should measure.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from models.builtins import CATALOG
from runtimes import frameworks


def sample_image(width: int, height: int, seed: int) -> Image.Image:
    """Random coloured blocks plus noise: different seeds give very different images."""
    rng = np.random.default_rng(seed)
    blocks = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((width, height))
    noise = rng.normal(0, 20, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(blocks, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def calibration_images(size: int, count: int = 8) -> np.ndarray:
    return np.stack([np.asarray(sample_image(size, size, 1000 + i), dtype=np.float32)
                     for i in range(count)])


def object_photos() -> list[Path]:
    """The sample photos of everyday objects beside the checkout (shared/README.md states what
    they show), in a fixed order; not every folder there (the face portraits would change what
    a calibration sees)."""
    images = Path(__file__).resolve().parents[2] / "shared" / "images"
    return sorted(path for folder in ("coral", "darknet", "ultralytics") for path in (images / folder).glob("*.jpg"))


def calibration_photos(size: int, count: int = 8) -> np.ndarray:
    """The sample photos beside the checkout (what the benchmark sends), else generated images."""
    photos = object_photos()[:count]
    if len(photos) < count:
        return calibration_images(size, count)
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32)
                     for p in photos])


def calibrate_batchnorm(model, batch: np.ndarray) -> None:
    """Each BatchNormalization layer's statistics set to those of its input on `batch`, the
    layers before it already calibrated: in one forward pass, each layer taking its input's
    statistics when the pass reaches it (a model up to each layer in turn, the same numbers,
    costs a pass per layer: DenseNet121 has 120)."""
    import keras

    def calibrating(layer):
        own = layer.call

        def call(inputs, training=None, mask=None):
            activations = np.asarray(inputs, dtype=np.float64)
            axes = tuple(range(activations.ndim - 1))
            layer.moving_mean.assign(activations.mean(axis=axes).astype(np.float32))
            layer.moving_variance.assign(activations.var(axis=axes).astype(np.float32) + 1e-3)
            return own(inputs, training=False, mask=mask)
        return call

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.call = calibrating(layer)
    try:
        model(batch, training=False)
    finally:
        for layer in layers:
            del layer.call


def spread_logits(model, batch: np.ndarray, spread: float = 1.5) -> None:
    """Centre and scale the classifier head so logits differ between images by ~`spread`."""
    import keras

    head = model.get_layer("predictions")
    features = np.asarray(keras.Model(model.input, head.input)(batch, training=False))
    kernel = head.kernel.numpy()
    logits = features @ kernel
    scale = spread / max(float(logits.std(axis=0).mean()), 1e-6)
    head.kernel.assign(kernel * scale)
    head.bias.assign(-logits.mean(axis=0) * scale)


def write_keras_weights(name: str, models_dir: Path) -> Path:
    frameworks.require({frameworks.TORCH, frameworks.TENSORFLOW})
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from models.builtins import BUILTINS

    spec = BUILTINS[name].architecture
    module = importlib.import_module(f"keras.applications.{spec['module']}")
    keras.utils.set_random_seed(1234)
    model = getattr(module, spec["constructor"])(weights=None)
    batch = module.preprocess_input(calibration_images(spec["side"]))
    calibrate_batchnorm(model, batch)
    spread_logits(model, batch)
    path = CATALOG[name].path(models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def imageai_network(name: str):
    """The detector's torch network as ImageAI builds it, with seeded random weights."""
    frameworks.require({frameworks.TORCH})
    import torch
    import torchvision
    from imageai.yolov3.tiny_yolov3 import YoloV3Tiny
    from imageai.yolov3.yolov3 import YoloV3

    torch.manual_seed(1234)
    if name == "yolo":
        return YoloV3(anchors=[10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90,
                               156, 198, 373, 326], num_classes=80)
    if name == "tiny_yolo":
        return YoloV3Tiny(anchors=[10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319], num_classes=80)
    return torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)


def write_imageai_weights(name: str, models_dir: Path, candidates: int | None = None, photos: int = 11) -> Path:
    import torch

    network = imageai_network(name)
    if candidates is not None:
        calibrate_detector(name, network, candidates, photos)
    path = CATALOG[name].path(models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return path


def calibrate_detector(name: str, network, candidates: int, count: int = 11) -> None:
    """BatchNorm statistics from calibration images, then the gate's bias shifted so each
    image has about `candidates` scores above it (YOLO: objectness > 0.5; RetinaNet: class
    score > 0.3, the default minimum score)."""
    import torch

    size = 416 if name != "retina" else 512
    batch = torch.from_numpy(calibration_photos(size, count)).permute(0, 3, 1, 2) / 255.0
    with torch.no_grad():
        if name == "retina":
            inputs = network.transform(list(batch))[0].tensors
            body, head, gate = network.backbone, network.head.classification_head.cls_logits, -0.8473  # logit(0.3)
        else:
            inputs, body, gate = batch, network, 0.0
            head = [m.conv for m in network.modules() if type(m).__name__ == "ConvLayer" and m.conv.bias is not None]
        _batchnorm_from(body, inputs)
        network.eval()
        _shift_gate(network, inputs if name != "retina" else list(batch), head, gate, candidates, count,
                    objectness=name != "retina")


def _batchnorm_from(body, inputs) -> None:
    import torch

    for module in body.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: exactly this batch's statistics
    body.train()
    body(inputs)


def _shift_gate(network, inputs, heads, gate: float, candidates: int, count: int, objectness: bool) -> None:
    """Move the gate logits (objectness channels, or every class logit) so that the median
    calibration image has `candidates` above the gate (a mean would follow the few images
    whose random responses have the heaviest tails)."""
    import torch

    heads = heads if isinstance(heads, list) else [heads]
    # (head number, a copy of its output): RetinaNet's head runs once per pyramid level, and
    # ImageAI's YOLO layer applies its sigmoid to the conv output in place.
    seen = []
    hooks = [h.register_forward_hook(lambda _m, _i, out, k=k: seen.append((k, out.detach().clone())))
             for k, h in enumerate(heads)]
    network(inputs)
    for hook in hooks:
        hook.remove()
    logits, channels = [], {}
    for k, out in seen:
        step = out.shape[1] // 3 if objectness else 1
        channels[k] = torch.arange(4, out.shape[1], step) if objectness else torch.arange(out.shape[1])
        logits.append(out[:, channels[k]].reshape(count, -1))
    ranked = torch.cat(logits, dim=1).sort(dim=1, descending=True).values
    shift = gate - float(ranked[:, candidates - 1].median())
    for k, head in enumerate(heads):
        head.bias[channels[k]] += shift


CALIBRATED_CANDIDATES = 15   # candidates per photo after calibration: what real weights give


def write_missing(names, models_dir: Path, candidates: int | None = CALIBRATED_CANDIDATES) -> list[str]:
    """Random weights for each named model whose official file is missing from `models_dir`
    (detectors calibrated to `candidates` per photo; None: plain random weights); the names
    written (said on stderr: a benchmark's stdout may be its JSON)."""
    written = []
    for name in names:
        if not CATALOG[name].path(models_dir).exists():
            print(f"writing random weights for {name} into {models_dir}", file=sys.stderr, flush=True)
            write_weights(name, models_dir, candidates)
            written.append(name)
    return written


def write_weights(name: str, models_dir: Path, candidates: int | None = None, photos: int = 11) -> Path:
    """The official file for `name` with random weights; `candidates` calibrates a detector
    to about that many candidates per image (None: plain random weights, thousands), on
    `photos` calibration photos."""
    if CATALOG[name].subdir == "classify":
        return write_keras_weights(name, models_dir)
    return write_imageai_weights(name, models_dir, candidates, photos)
