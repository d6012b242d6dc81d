"""Faces for the tests: an instant fake face model, the shared photos, and helpers that post to
the face routes as DeepStack clients do (multipart form fields, then the file parts)."""
from __future__ import annotations

import io
import threading

import numpy as np
from PIL import Image

from contract import Face, FaceModel
from tests.support.http import multipart
from tests.support.paths import SHARED

FACES = SHARED / "images" / "faces"
# ../shared/images/faces/README.md: who is in each photo.
REGISTER = {"obama": "obama1.jpg", "biden": "biden1.jpg", "alex": "alex_lacamoire1.jpg"}
PROBES = {"obama2.jpg": "obama", "obama3_480p.jpg": "obama", "biden2.jpg": "biden",
          "alex_lacamoire2.jpg": "alex", "alex_lacamoire3.png": "alex", "lin_manuel_miranda.png": "unknown"}
GROUPS = {"obama_and_biden.jpg": {"obama", "biden"}, "two_people.jpg": {"obama", "biden"}}
# Who each face of the group photos is, by where its box starts (x, in the photo's pixels, looked
# at): obama_and_biden.jpg also shows a child, partly shaded, at the bottom right.
GROUP_FACES = {"obama_and_biden.jpg": ((700, 1000, "biden"), (1100, 1400, "obama"), (1500, 1800, "unknown")),
               "two_people.jpg": ((200, 450, "obama"), (750, 1000, "biden"))}


def who_is(name: str, box) -> str:
    """The person a face of a probe or group photo shows."""
    if name in PROBES:
        return PROBES[name]
    return next(person for left, right, person in GROUP_FACES[name] if left <= box[0] < right)


def photo(name: str) -> bytes:
    return (FACES / name).read_bytes()


def solid_jpeg(color, size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG", quality=95)
    return out.getvalue()


class FakeFaceModel(FaceModel):
    """One face per photo, the middle half of it, whose embedding is its mean colour (0-1): photos
    of one colour are one person. A photo darker than NO_FACE_BELOW (mean) shows no face; one
    wider than three times its height shows two faces (left and right halves)."""

    name = "fake_faces"
    embedding_size = 3
    same_person_distance = 0.1
    default_min_score = 0.5
    NO_FACE_BELOW = 20

    def __init__(self, delay: float = 0.0, fail_predict: bool = False):
        self.delay, self.fail_predict = delay, fail_predict
        self.calls = 0
        self._lock = threading.Lock()

    def load(self):
        pass

    def predict(self, images, min_score, embed):
        import time
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.fail_predict:
            raise RuntimeError("boom at 0xdeadbeef")
        return [[face for face in self._faces(image, embed) if face.score >= min_score] for image in images]

    def _faces(self, image: Image.Image, embed: bool) -> list[Face]:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        if pixels.mean() < self.NO_FACE_BELOW:
            return []
        width, height = image.size
        halves = [(0, width // 2), (width // 2, width)] if width > 3 * height else [(0, width)]
        faces = []
        for left, right in halves:
            part = pixels[:, left:right]
            box = (left + (right - left) // 4, height // 4, left + 3 * (right - left) // 4, 3 * height // 4)
            embedding = (part.reshape(-1, 3).mean(axis=0) / 255).astype(np.float32) if embed else None
            faces.append(Face(box, 0.9, embedding))
        return faces


def post_form(client, path: str, files=(), **fields):
    """A DeepStack client's multipart body: the form fields, then each (name, filename, bytes) file."""
    content_type, body = multipart(fields=fields, files=list(files))
    return client.post(path, data=body, content_type=content_type)
