"""ImageAI 3.0.3 detectors: YOLOv3, TinyYOLOv3 and RetinaNet.

ImageAI's `ObjectDetection` loads the network and weights. Two of its input paths are wrong
for a server, so each model gets what it handles correctly:
- YOLO expects OpenCV's BGR order (a PIL image gets RGB treated as BGR): it gets a BGR array,
  through ImageAI's own letterbox and network, with its post-processing done without the
  per-box loop and the drawing (detectors/imageai_yolo.py; identical detections).
- RetinaNet writes any non-path input to a temporary JPEG inside the installed package (fails
  on a read-only image, races between requests, and re-encodes the pixels): its network is
  called with the exact tensor ImageAI would build from that file (RGB, CHW, 0-1), no file.
Concurrent YOLO requests are micro-batched (`batchable`): the letterboxed images go through
one network call, candidates and NMS after it (on torch, on the network's device). RetinaNet
runs one image per network call (batches measured slower on a GPU). ImageAI keeps state in its
layers, so each detector runs one call at a time.

By default (INFERENCE_RUNTIME=openvino, no GPU) OpenVINO runs the convolutional networks:
YOLO's up to its detection layers (imageai_yolo.py), RetinaNet's backbone and heads
(imageai_retinanet.py). YOLO's detection layers, thresholds and NMS then run in numpy with
ImageAI's arithmetic; torchvision's steps around RetinaNet's network are made again in numpy.
ImageAI loads the weights for a conversion, and the compiled networks are checked against
torch's answer on a probe at every load (a start from the converted-model cache checks against
the answer the entry recorded and loads no ImageAI network at all: YOLO decodes with the
recorded anchors, RetinaNet's steps read their settings from the entry, and neither imports
torch or imageai); a model OpenVINO cannot run stays on torch.
"""
from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from contract import LETTERBOX, OPENVINO, Detection, Detector, NetworkTensors, TensorInfo
from detectors import imageai_retinanet, imageai_yolo
from models.builtin_model import BuiltinModel
from runtimes import frameworks, openvino

log = logging.getLogger(__name__)


class ImageAIDetector(BuiltinModel, Detector):
    """A built-in row's `architecture`: model_type (ObjectDetection.setModelTypeAs<model_type>)."""
    framework = frameworks.TORCH
    framework_label = "torch"
    frameworks = frozenset({frameworks.TORCH})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_type = self.builtin.architecture["model_type"]
        # YOLO: letterboxed input batch (numpy) -> the network's output: numpy on OpenVINO, a torch
        # tensor on the network's device on torch.
        self._forward = None
        self._detector = None
        self._retinanet_steps = None   # RetinaNet on torch: the network whose transform, anchors and NMS run
        self._lock = threading.Lock()
        # YOLO stacks a micro-batch into one network call. RetinaNet runs one image per call:
        # a batch was measured slower than the images one by one on a GPU (docs/performance.md),
        # and on the CPU OpenVINO runs its network one image at a time anyway.
        self.batchable = self.model_type != "RetinaNet"
        # YOLO letterboxes to 416x416; RetinaNet resizes inside the network (shorter side 800).
        self.resize_mode = None if self.model_type == "RetinaNet" else LETTERBOX

    @property
    def labels(self) -> list[str]:
        return _imageai_classes("coco91_classes.txt" if self.model_type == "RetinaNet" else "coco_classes.txt")

    @property
    def input_size(self) -> tuple[int, int] | None:
        return None if self.resize_mode is None else (imageai_yolo.YOLO_INPUT, imageai_yolo.YOLO_INPUT)

    @property
    def device(self) -> str:
        if self._runtime == OPENVINO:
            return self.openvino_devices
        if self._detector is None:
            return "cpu"
        return str(self._network_device())

    def described(self) -> dict:
        return {"format": "imageai", "architecture": self.model_type}

    def build(self, weights_path: Path):
        """ImageAI's ObjectDetection with the weights loaded (raises on a bad file)."""
        from imageai.Detection import ObjectDetection

        detector = ObjectDetection()
        getattr(detector, f"setModelTypeAs{self.model_type}")()
        detector.setModelPath(str(weights_path))
        detector.loadModel()
        return detector

    def gpu_in_use(self) -> str | None:
        """ImageAI places the network on a GPU wherever torch sees one (asked only where the host
        shows a GPU driver: BuiltinModel._gpu_reason)."""
        import torch

        if not torch.cuda.is_available():
            return None
        log.info("model '%s': ImageAI places the network on a GPU, where torch runs it", self.name)
        return "a GPU is visible to torch: its GPU path runs the model"

    def load_framework(self, detector) -> None:
        self._detector = detector
        if self.model_type == "RetinaNet":
            self._retinanet_steps = detector._ObjectDetection__model
        else:
            self._forward = self._torch_forward()

    def load_openvino(self, detector: openvino.FrameworkModel, weights: Path) -> openvino.CompiledNetwork:
        """The network's convolutions compiled by OpenVINO (checked against torch when converted,
        against the recorded answer on a start from the cache). The steps after the network run
        in numpy (imageai_yolo.py, imageai_retinanet.py): from the cache, nothing here imports
        torch or imageai."""
        source = self.source_versions()
        code = (__file__, (imageai_retinanet if self.model_type == "RetinaNet" else imageai_yolo).__file__)
        key = openvino.cache_key(self.name, weights, source, code, models_dir=self.models_dir)
        if self.model_type == "RetinaNet":
            self._forward = imageai_retinanet.compile_dense(lambda: detector()._ObjectDetection__model, key,
                                                            self.models_dir, self.options)
            return self._forward.dense
        compiled, specs = imageai_yolo.compile_heads(lambda: detector()._ObjectDetection__model, key,
                                                     self.models_dir, self.options)
        self._forward = lambda inputs: imageai_yolo.decode_heads(specs, compiled(inputs))
        return compiled

    def _torch_forward(self):
        import torch

        network = self._detector._ObjectDetection__model
        device = self._network_device()

        def forward(inputs):
            with torch.no_grad():
                return network(torch.from_numpy(inputs).to(device))
        return forward

    def network_tensors(self) -> NetworkTensors | None:
        """YOLO's letterboxed input and its network's output (ImageAI's detection layers
        applied), once loaded. RetinaNet offers none: its network takes a list of images of any
        size and answers boxes after torchvision's own steps, no tensor a client could send."""
        if self._forward is None or self.model_type == "RetinaNet":
            return None
        side, float32 = imageai_yolo.YOLO_INPUT, np.dtype(np.float32)
        return NetworkTensors(TensorInfo("images", (None, 3, side, side), float32),
                              (TensorInfo("output", (None, None, 5 + len(self.labels)), float32),),
                              f"RGB letterboxed to {side}x{side} (ImageAI's: bicubic, grey 128), divided by 255, NCHW")

    def infer_tensors(self, batch: np.ndarray) -> list[np.ndarray]:
        with self._lock:   # ImageAI's layers (torch's path) keep state: one network call at a time
            output = self._forward(batch)
        # numpy on OpenVINO's path; a tensor on the network's device on torch's.
        return [output if isinstance(output, np.ndarray) else output.cpu().numpy()]

    def predict(self, images: list[Image.Image], min_score: float) -> list[list[Detection]]:
        retinanet = self.model_type == "RetinaNet"
        # RetinaNet's tensor shares the array's memory (a writable copy: torch refuses a
        # read-only one); YOLO only reads the pixels to letterbox them.
        rgbs = [np.array(image) if retinanet else np.asarray(image) for image in images]
        with self._lock:
            if retinanet:
                found = self._retinanet(rgbs, min_score)
            else:
                found = imageai_yolo.detect(self._forward, self.labels, rgbs, min_score)
        return [[Detection(label, score, _clip(box, rgb.shape[1], rgb.shape[0])) for label, score, box in raw]
                for rgb, raw in zip(rgbs, found)]

    def _network_device(self):
        return next(self._detector._ObjectDetection__model.parameters()).device

    def _retinanet(self, rgbs: list[np.ndarray], min_score: float) -> list[list[tuple]]:
        """Per image, (label, score, box), one network call each."""
        classes = self.labels
        found: list[list[tuple]] = []
        for rgb in rgbs:
            boxes, scores, labels = self._forward(rgb) if self._runtime == OPENVINO else self._torch_retinanet(rgb)
            found.append([(classes[label], float(score), [int(v) for v in box])
                          for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist())
                          if score >= min_score])
        return found

    def _torch_retinanet(self, rgb: np.ndarray):
        """torchvision's RetinaNet.forward on the network's device: (boxes, scores, labels)."""
        import torch

        network = self._retinanet_steps
        if _resized_away(network.transform, *rgb.shape[:2]):
            return imageai_retinanet.nothing_found()   # torchvision raises on a strip resized to 0 pixels
        tensor = torch.from_numpy(rgb).permute(2, 0, 1).to(self._network_device()).float().div(255.0)
        with torch.no_grad():
            output = network([tensor])[0]
        return output["boxes"], output["scores"], output["labels"]


@functools.lru_cache(maxsize=None)
def _imageai_classes(filename: str) -> list[str]:
    """ImageAI's own class list, as copied beside this module (detectors/labels: a serving-only
    install has no ImageAI)."""
    with open(Path(__file__).parent / "labels" / filename, encoding="utf-8") as f:
        return [line.strip() for line in f.read().splitlines()]


def _resized_away(transform, height: int, width: int) -> bool:
    """Whether torchvision's RetinaNet transform would resize the image to 0 rows or columns (a
    2000x1 strip: its shorter side is scaled by at most 1333/2000), where it raises."""
    return min(imageai_retinanet.resized_size(height, width, transform.min_size[-1], transform.max_size)) < 1


def _clip(box, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (int(v) for v in box)
    return (min(max(x1, 0), width), min(max(y1, 0), height),
            min(max(x2, 0), width), min(max(y2, 0), height))
