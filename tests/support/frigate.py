"""Frigate's DeepStack detector plugin, its request building and answer parsing kept as Frigate
has them, so tests call the service the way Frigate does."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import requests
from PIL import Image


def frigate_labelmap() -> dict[int, str]:
    """Frigate's `merged_labelmap` for its default model: index -> COCO name. Frigate's
    labelmap.txt holds the 91 COCO category names (slot 7, truck, reads `car`); ImageAI ships the
    same 91-name list, read here so no copy of it lives in this repository."""
    import importlib.util
    folder = Path(importlib.util.find_spec("imageai").submodule_search_locations[0]) / "Detection"
    names = [line.strip() for line in (folder / "coco91_classes.txt").read_text().splitlines() if line.strip()]
    return dict(enumerate(names))


class FrigateDeepStack:
    """Frigate's DeepStack detector (blakeblackshear/frigate @ e3fa701,
    frigate/detectors/plugins/deepstack.py), request and parsing kept as its `detect_raw` has
    them: one `requests.Session`; the frame saved by Pillow as a JPEG with its defaults; form
    data `{"api_key": api_key}` (empty when none is configured) and `files={"image": bytes}`;
    `timeout=api_timeout` on every post, a request error giving no detections (Frigate logs
    it; here it is kept in `errors`); at most 20 rows, stopping at the first prediction under
    0.4 or with a label its labelmap lacks (`truck` read as `car`)."""

    def __init__(self, api_url: str, api_timeout: float = 0.1, api_key: str = ""):
        self.api_url, self.api_timeout, self.api_key = api_url, api_timeout, api_key
        self.labels = frigate_labelmap()
        self.session = requests.Session()
        self.errors: list[Exception] = []

    def get_label_index(self, label_value: str) -> int:
        if label_value.lower() == "truck":
            label_value = "car"
        for index, value in self.labels.items():
            if value == label_value.lower():
                return index
        return -1

    def detect_raw(self, tensor_input: np.ndarray) -> np.ndarray:
        image = Image.fromarray(np.squeeze(tensor_input).astype(np.uint8))
        w, h = image.size
        with io.BytesIO() as output:
            image.save(output, format="JPEG")
            image_bytes = output.getvalue()
        try:
            response = self.session.post(self.api_url, data={"api_key": self.api_key},
                                         files={"image": image_bytes}, timeout=self.api_timeout)
        except requests.exceptions.RequestException as ex:
            self.errors.append(ex)
            return np.zeros((20, 6), np.float32)
        response_json = response.json()
        detections = np.zeros((20, 6), np.float32)
        if response_json.get("predictions") is None:
            return detections
        for i, detection in enumerate(response_json.get("predictions")):
            if detection["confidence"] < 0.4:
                break
            label = self.get_label_index(detection["label"])
            if label < 0:
                break
            detections[i] = [label, float(detection["confidence"]), detection["y_min"] / h,
                             detection["x_min"] / w, detection["y_max"] / h, detection["x_max"] / w]
        return detections
