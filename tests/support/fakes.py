"""Instant models for the HTTP layer's tests: no TensorFlow, no torch."""
from __future__ import annotations

import numpy as np

from contract import Classifier, Detection, Detector


class FakeClassifier(Classifier):
    """Probabilities follow the image's mean colour, so different images differ."""

    name = "fake_classifier"

    def __init__(self, fail_load: bool = False, fail_predict: bool = False, load_delay: float = 0.0):
        self.fail_load, self.fail_predict, self.load_delay = fail_load, fail_predict, load_delay
        self.load_calls = 0
        self.seen_sizes: list[tuple[int, int]] = []
        self._loaded = False

    @property
    def input_size(self):
        return (4, 4)

    @property
    def labels(self):
        return ["red", "green", "blue"]

    def load(self):
        import time
        self.load_calls += 1
        time.sleep(self.load_delay)
        if self.fail_load:
            raise OSError("/secret/path/weights.h5 is garbage")
        self._loaded = True

    def predict(self, images):
        assert self._loaded
        if self.fail_predict:
            raise RuntimeError("boom at 0xdeadbeef")
        out = []
        for img in images:
            self.seen_sizes.append(img.size)
            pixels = np.asarray(img, dtype=np.float64)
            means = pixels.reshape(-1, 3).mean(axis=0) + 1e-3
            out.append(means / means.sum())
        return np.array(out)


class FakeDetector(Detector):
    name = "fake_detector"

    def __init__(self, fail_predict: bool = False):
        self.fail_predict = fail_predict

    @property
    def labels(self):
        return ["dog", "cat"]

    def load(self):
        pass

    def predict(self, images, min_score):
        return [self._detect(image, min_score) for image in images]

    def _detect(self, image, min_score):
        if self.fail_predict:
            raise RuntimeError("detector exploded")
        w, h = image.size
        found = [Detection("dog", 0.9, (0, 0, w // 2, h // 2)),
                 Detection("cat", 0.4, (w // 2, h // 2, w, h)),
                 Detection("cat", 0.1, (min(1, w), min(1, h), min(2, w), min(2, h)))]  # inside a 1-pixel image too
        return [d for d in found if d.score >= min_score]


class ManyBoxDetector(FakeDetector):
    """`count` boxes spread over the image, scores falling from 1 towards 0 (annotation caps)."""

    name = "many_boxes"

    def __init__(self, count: int):
        super().__init__()
        self.count = count

    def _detect(self, image, min_score):
        w, h = image.size
        found = []
        for i in range(self.count):
            x, y = (i * 97) % max(1, w - 10), (i * 61) % max(1, h - 10)
            found.append(Detection("dog" if i % 2 else "cat", 1 - i / (self.count + 1),
                                   (x, y, min(w, x + w // 10 + 1), min(h, y + h // 10 + 1))))
        return [d for d in found if d.score >= min_score]
