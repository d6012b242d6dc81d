"""Weight files of the real architectures with random weights, under the official names
(for the tests and for benchmarks where the published files cannot be downloaded).

The service's real loading code then reads them exactly as it reads the published files.
Keras models get their BatchNorm statistics calibrated layer by layer on a small batch, so
their outputs depend on the input (plain random weights give nearly the same answer for every
image, and a parity test on them would prove nothing).
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
from PIL import Image

from models.weights import CATALOG
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


def calibrate_batchnorm(model, batch: np.ndarray) -> None:
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            probe = keras.Model(model.input, layer.input)
            activations = np.asarray(probe(batch, training=False), dtype=np.float64)
            axes = tuple(range(activations.ndim - 1))
            layer.moving_mean.assign(activations.mean(axis=axes).astype(np.float32))
            layer.moving_variance.assign(activations.var(axis=axes).astype(np.float32) + 1e-3)


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

    from classifiers.keras_applications import SPECS

    spec = SPECS[name]
    module = importlib.import_module(f"keras.applications.{spec.module}")
    keras.utils.set_random_seed(1234)
    model = getattr(module, spec.constructor)(weights=None)
    batch = module.preprocess_input(calibration_images(spec.size))
    calibrate_batchnorm(model, batch)
    spread_logits(model, batch)
    path = CATALOG[name].path(models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def calibrate_yolo(network, spread: float = 2.0) -> None:
    """BatchNorm statistics from a calibration batch, and head outputs scaled to a standard
    deviation of `spread`. Plain random weights give head outputs of about +-0.04: every
    objectness within 0.01 of ImageAI's 0.5 gate, thousands of exact float32 ties, and an NMS
    whose result turns on the last bit of the arithmetic. Calibrated, about half of the
    candidates still pass the gate (thousands of boxes), with distinct scores."""
    import torch

    from detectors import imageai_yolo

    batch = torch.cat([imageai_yolo.letterboxed(np.asarray(sample_image(416 + 64 * (i % 3), 416, 2000 + i)))
                       for i in range(8)])
    norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None          # a cumulative average: one batch gives its own statistics
    network.train()
    with torch.no_grad():
        network(batch)
    network.eval()
    for norm in norms:
        norm.momentum = 0.1
    module, _ = imageai_yolo.head_outputs(network)
    heads = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None]
    with torch.no_grad():
        for head, raw in zip(heads, module(batch), strict=True):
            scale = spread / float(raw.std())
            head.weight.mul_(scale)
            head.bias.copy_(head.bias * scale - raw.mean(dim=(0, 2, 3)) * scale)


def write_imageai_weights(name: str, models_dir: Path) -> Path:
    frameworks.require({frameworks.TORCH})
    import torch
    import torchvision
    from imageai.yolov3.tiny_yolov3 import YoloV3Tiny
    from imageai.yolov3.yolov3 import YoloV3

    torch.manual_seed(1234)
    if name == "yolo":
        network = YoloV3(anchors=[10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90,
                                  156, 198, 373, 326], num_classes=80)
    elif name == "tiny_yolo":
        network = YoloV3Tiny(anchors=[10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319],
                             num_classes=80)
    else:
        network = torchvision.models.detection.retinanet_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=91)
    if name != "retina":
        calibrate_yolo(network)
    path = CATALOG[name].path(models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return path


def write_weights(name: str, models_dir: Path) -> Path:
    if CATALOG[name].subdir == "classify":
        return write_keras_weights(name, models_dir)
    return write_imageai_weights(name, models_dir)
