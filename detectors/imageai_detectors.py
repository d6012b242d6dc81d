"""ImageAI 3.0.3 detectors: YOLOv3, TinyYOLOv3 and RetinaNet.

ImageAI's `ObjectDetection` loads the network and weights. Two of its input paths are wrong
for a server, so each model gets what it handles correctly:
- YOLO expects OpenCV's BGR order (a PIL image gets RGB treated as BGR): it gets a BGR array,
  through ImageAI's own letterbox and network, with its post-processing done without the
  per-box loop and the drawing (detectors/imageai_yolo.py; identical detections).
- RetinaNet writes any non-path input to a temporary JPEG inside the installed package (fails
  on a read-only image, races between requests, and re-encodes the pixels): its network is
  called with the exact tensor ImageAI would build from that file (RGB, CHW, 0-1), no file.
ImageAI keeps state in module-level layers, so each detector runs one image at a time.

By default (INFERENCE_RUNTIME=openvino, no GPU) OpenVINO runs the convolutional networks:
YOLO's up to its detection layers (imageai_yolo.py), RetinaNet's backbone and heads
(imageai_retinanet.py); ImageAI's and torchvision's own decoding, thresholds and NMS stay in
Python. ImageAI still loads the weights, and the compiled networks are checked against torch
at load; a model OpenVINO cannot run stays on torch.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
import logging
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from contract import LETTERBOX, Detection, Detector
from detectors import imageai_retinanet, imageai_yolo
from models.weights import CATALOG, WeightFile, ensure_weights
from runtimes import frameworks, openvino

log = logging.getLogger(__name__)
TORCH = "torch"


@dataclasses.dataclass(frozen=True)
class ImageAISpec:
    name: str
    model_type: str  # ObjectDetection.setModelTypeAs<model_type>

    @property
    def weights(self) -> WeightFile:
        return CATALOG[self.name]


SPECS = {s.name: s for s in (
    ImageAISpec("yolo", "YOLOv3"),
    ImageAISpec("tiny_yolo", "TinyYOLOv3"),
    ImageAISpec("retina", "RetinaNet"),
)}


def create(name: str, models_dir: Path, download: bool = True) -> "ImageAIDetector":
    return ImageAIDetector(SPECS[name], models_dir, download)


class ImageAIDetector(Detector):
    frameworks = frozenset({frameworks.TORCH})

    def __init__(self, spec: ImageAISpec, models_dir: Path, download: bool = True):
        self.spec = spec
        self.name = spec.name
        self.models_dir = Path(models_dir)
        self.download = download
        self.wanted_runtime = frameworks.inference_runtime()
        self.precision = frameworks.inference_precision()
        self._runtime: str | None = None          # what runs the network, once loaded
        self._runtime_reason: str | None = None   # why that is not the configured runtime
        self._precision_in_use: str | None = None
        self._forward = None   # YOLO: letterboxed input tensor -> the network's output on the CPU
        self._detector = None
        self._lock = threading.Lock()
        # YOLO letterboxes to 416x416; RetinaNet resizes inside the network (shorter side 800).
        self.resize_mode = None if spec.model_type == "RetinaNet" else LETTERBOX

    @property
    def labels(self) -> list[str]:
        return _imageai_classes("coco91_classes.txt" if self.spec.model_type == "RetinaNet"
                                else "coco_classes.txt")

    @property
    def input_size(self) -> tuple[int, int] | None:
        return None if self.resize_mode is None else (imageai_yolo.YOLO_INPUT, imageai_yolo.YOLO_INPUT)

    @property
    def runtime(self) -> str:
        """The configured runtime until loaded (openvino, or the framework: torch); then the
        one that runs the network."""
        if self._runtime:
            return self._runtime
        return openvino.OPENVINO if self.wanted_runtime == openvino.OPENVINO else TORCH

    @property
    def device(self) -> str:
        if self._detector is None or self._runtime == openvino.OPENVINO:
            return "cpu"
        return str(self._network_device())

    def describe(self) -> dict:
        info = {"format": "imageai", "builtin": True, "architecture": self.spec.model_type,
                "weights": self.spec.weights.filename}
        return openvino.with_runtime_details(info, self._runtime, self._precision_in_use, self._runtime_reason)

    def load_failure(self, exc: Exception) -> str:
        return self.spec.weights.unreadable(exc)

    def build(self, weights_path: Path):
        """ImageAI's ObjectDetection with the weights loaded (raises on a bad file)."""
        from imageai.Detection import ObjectDetection

        detector = ObjectDetection()
        getattr(detector, f"setModelTypeAs{self.spec.model_type}")()
        detector.setModelPath(str(weights_path))
        detector.loadModel()
        return detector

    def load(self) -> None:
        path = ensure_weights(self.spec.weights, self.models_dir, download=self.download,
                              check=self.build)
        self._detector = self.build(path)
        if self.spec.model_type != "RetinaNet":
            self._forward = self._torch_forward()
        if self.wanted_runtime == openvino.OPENVINO:
            reason = self._gpu_in_use()
            if reason is None:
                forward, reason = openvino.attempt(self.name, "torch", lambda: self._openvino(path))
                if forward is not None:
                    self._forward, self._runtime = forward, openvino.OPENVINO
                    return
            self._runtime_reason = reason
        self._runtime = TORCH

    def _gpu_in_use(self) -> str | None:
        """Where ImageAI put the network on a GPU, torch runs it there (the reason); else None."""
        if self._network_device().type == "cpu":
            return None
        log.info("model '%s': ImageAI placed the network on a GPU, where torch runs it", self.name)
        return "a GPU is visible to torch: its GPU path runs the model"

    def _openvino(self, weights: Path):
        """The network's convolutions compiled by OpenVINO (checked against torch at load);
        ImageAI's detection layers, thresholds and NMS stay in Python."""
        import torch

        source = f"torch{torch.__version__}-imageai{importlib.metadata.version('imageai')}"
        key = openvino.cache_key(self.name, weights, source)
        network = self._detector._ObjectDetection__model
        if self.spec.model_type == "RetinaNet":
            compiled = imageai_retinanet.compile_dense(network, key, self.models_dir, self.precision)
            self._precision_in_use = compiled.precision
            return compiled
        compiled, layers = imageai_yolo.compile_heads(network, key, self.models_dir, self.precision)
        self._precision_in_use = compiled.precision
        return lambda inputs: imageai_yolo.decode_heads(layers, compiled(inputs.numpy()))

    def _torch_forward(self):
        import torch

        network = self._detector._ObjectDetection__model
        device = self._network_device()

        def forward(inputs):
            with torch.no_grad():
                return network(inputs.to(device)).cpu()
        return forward

    def predict(self, images: list[Image.Image], min_score: float) -> list[list[Detection]]:
        return [self._detect(image, min_score) for image in images]

    def _network_device(self):
        return next(self._detector._ObjectDetection__model.parameters()).device

    def _detect(self, image: Image.Image, min_score: float) -> list[Detection]:
        rgb = np.array(image)  # a writable copy: torch refuses read-only arrays
        with self._lock:
            if self.spec.model_type == "RetinaNet":
                raw = self._retinanet(rgb, min_score)
            else:
                raw = self._yolo(rgb, min_score)
        height, width = rgb.shape[:2]
        return [Detection(label, score, _clip(box, width, height)) for label, score, box in raw]

    def _yolo(self, rgb: np.ndarray, min_score: float):
        return imageai_yolo.detect(self._forward, self._detector._ObjectDetection__classes, rgb, min_score)

    def _retinanet(self, rgb: np.ndarray, min_score: float):
        import torch

        network = self._detector._ObjectDetection__model
        classes = self._detector._ObjectDetection__classes
        device = self._network_device()
        tensor = torch.from_numpy(rgb).permute(2, 0, 1)
        tensor = tensor.to(device).float().div(255.0)
        if self._runtime == openvino.OPENVINO:
            output = imageai_retinanet.detections(network, self._forward, tensor)
        else:
            with torch.no_grad():
                output = network([tensor])[0]
        results = []
        for box, score, label in zip(output["boxes"].tolist(), output["scores"].tolist(),
                                     output["labels"].tolist()):
            if score >= min_score:
                results.append((classes[label], float(score), [int(v) for v in box]))
        return results


@functools.lru_cache(maxsize=None)
def _imageai_classes(filename: str) -> list[str]:
    """ImageAI's own class list, read from its package without importing it (and torch)."""
    package = importlib.util.find_spec("imageai").submodule_search_locations[0]
    with open(Path(package) / "Detection" / filename, encoding="utf-8") as f:
        return [line.strip() for line in f.read().splitlines()]


def _clip(box, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (int(v) for v in box)
    return (min(max(x1, 0), width), min(max(y1, 0), height),
            min(max(x2, 0), width), min(max(y2, 0), height))
