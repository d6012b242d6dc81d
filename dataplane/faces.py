"""Face recognition in the data plane: the face model's faces (through the pipeline, like every
task: decoding, admission's time limit, metrics, the report) compared with the face store.

Distances are Euclidean between embeddings. DeepStack's clients speak of a 0-1 `confidence`
(`min_confidence`, default 0.67), so a distance d is served as
    confidence = 1 / (1 + exp(SLOPE * (d / t - CENTRE)))
with t the model's published same-person distance (0.6 for dlib): d = t gives 0.67, DeepStack's
default threshold; closer faces approach 1, far ones 0. A face is named only when its nearest
registered face is within the operator's FACE_MAX_DISTANCE (default: t) and its confidence
reaches the client's min_confidence: a client can ask for more certainty, never for less.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from contract import Face, FaceModel
from dataplane.face_store import FaceStore
from dataplane.pipeline import ImageResult, Pipeline
from dataplane.sources import ImageSource
from errors import NoFace

# The logistic from distance to confidence: SLOPE sets how fast it falls; CENTRE makes d = t
# give 0.67 (1 / (1 + exp(SLOPE * (1 - CENTRE))) = 0.67).
SLOPE = 10.0
CENTRE = 1.0 + math.log(1 / 0.67 - 1) / -SLOPE


def confidence(distance: float, same_person: float) -> float:
    if not math.isfinite(distance):
        return 0.0
    return 1.0 / (1.0 + math.exp(SLOPE * (distance / same_person - CENTRE)))


@dataclasses.dataclass(frozen=True)
class KnownFace:
    face: Face
    userid: str | None        # None: unknown (nobody close enough, or below min_confidence)
    nearest: str | None       # the nearest registered person, whoever it is
    distance: float           # to the nearest registered face; inf when nobody is registered
    confidence: float         # of the nearest, 0-1 (0 when nobody is registered)


@dataclasses.dataclass(frozen=True)
class Registration:
    existed: bool                                       # the userid had faces already
    used: list[tuple[int, Face, int]]                   # (image index, the face used, faces in that image)
    skipped: list[int]                                  # images in which no face was found


class FaceRecognition:
    def __init__(self, pipeline: Pipeline, store: FaceStore, model: FaceModel, max_distance: float = 0.0):
        """`max_distance`: FACE_MAX_DISTANCE, 0 for the model's own same-person distance."""
        self.pipeline, self.store, self.model = pipeline, store, model
        self.max_distance = max_distance or model.same_person_distance

    def confidence(self, distance: float) -> float:
        return confidence(distance, self.model.same_person_distance)

    def detect(self, sources: list[ImageSource], *, min_score: float, route: str,
               gone: Callable[[], bool] = lambda: False) -> tuple[str, list[ImageResult]]:
        slot, results = self.pipeline.faces(sources, min_score=min_score, embed=False, route=route, gone=gone)
        return slot.name, results

    def recognize(self, sources: list[ImageSource], *, min_confidence: float, route: str,
                  gone: Callable[[], bool] = lambda: False) -> tuple[str, list[ImageResult]]:
        """Each image's faces, largest first, as KnownFace (in `value`), or that image's error."""
        slot, results = self.pipeline.faces(sources, min_score=self.model.default_min_score, embed=True,
                                            route=route, gone=gone)
        faces = [face for r in results if r.error is None for face in r.value]
        if faces:
            nearest = iter(self.store.nearest(np.stack([face.embedding for face in faces])))
            for result in (r for r in results if r.error is None):
                result.value = [self._named(face, next(nearest), min_confidence) for face in result.value]
        return slot.name, results

    def _named(self, face: Face, nearest, min_confidence: float) -> KnownFace:
        score = self.confidence(nearest.distance)
        known = nearest.userid is not None and nearest.distance <= self.max_distance and score >= min_confidence
        return KnownFace(face, nearest.userid if known else None, nearest.userid, nearest.distance, score)

    def register(self, userid: str, sources: list[ImageSource], *, route: str,
                 gone: Callable[[], bool] = lambda: False) -> Registration:
        """The largest face of each image, added to `userid` in one transaction. An image that
        cannot be read fails the whole registration; one without a face is skipped, and NoFace
        when no image has one."""
        _, results = self.pipeline.faces(sources, min_score=self.model.default_min_score, embed=True,
                                         route=route, gone=gone)
        for result in results:
            if result.error is not None:
                raise result.error
        used = [(i, r.value[0], len(r.value)) for i, r in enumerate(results) if r.value]
        if not used:
            raise NoFace("No face was found in the image." if len(results) == 1 else
                         f"No face was found in any of the {len(results)} images.")
        existed = self.store.register(userid, [face.embedding for _, face, _ in used])
        return Registration(existed, used, [i for i, r in enumerate(results) if not r.value])

    def match(self, sources: list[ImageSource], *, route: str,
              gone: Callable[[], bool] = lambda: False) -> tuple[float, float]:
        """(distance, similarity) between the largest faces of two images."""
        _, results = self.pipeline.faces(sources, min_score=self.model.default_min_score, embed=True,
                                         route=route, gone=gone)
        for result in results:
            if result.error is not None:
                raise result.error
        missing = [f"image{i + 1}" for i, r in enumerate(results) if not r.value]
        if missing:
            raise NoFace(f"No face was found in {' or '.join(missing)}.")
        first, second = (r.value[0].embedding.astype(np.float64) for r in results)
        distance = float(np.linalg.norm(first - second))
        return distance, self.confidence(distance)
