"""Image → model input for users' models: resize (stretch or letterbox), normalise, layout.

Each resize mode follows the convention of the models it comes from, which is what their
weights were trained on: `stretch` resizes with Pillow's bilinear filter (Keras/TF image
pipelines, the Coral reference), `letterbox` with OpenCV's INTER_LINEAR onto grey 114 (the
YOLO pipelines). `Placement` remembers how the image was placed in the model input, so
detections map back to the original image's pixels.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
from PIL import Image

LETTERBOX_GREY = (114, 114, 114)


@dataclasses.dataclass(frozen=True)
class Placement:
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int    # original image
    height: int

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes in model-input pixels -> xyxy in the original image, clipped."""
        out = boxes.astype(np.float64).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.height)
        return out


def place(image: Image.Image, size: tuple[int, int], resize: str) -> tuple[np.ndarray, Placement]:
    """Return the (height, width, 3) float32 RGB 0-255 model input and its placement."""
    height, width = size
    src_w, src_h = image.size
    if resize == "stretch":
        resized = image if image.size == (width, height) else image.resize((width, height), Image.BILINEAR)
        return (np.asarray(resized, dtype=np.float32),
                Placement(width / src_w, height / src_h, 0.0, 0.0, src_w, src_h))
    ratio = min(width / src_w, height / src_h)
    new_w, new_h = max(1, round(src_w * ratio)), max(1, round(src_h * ratio))
    pad_x, pad_y = (width - new_w) // 2, (height - new_h) // 2
    pixels = np.asarray(image)
    if (new_w, new_h) != (src_w, src_h):
        pixels = cv2.resize(pixels, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((height, width, 3), LETTERBOX_GREY, dtype=np.float32)
    canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = pixels
    return (canvas,
            Placement(new_w / src_w, new_h / src_h, float(pad_x), float(pad_y), src_w, src_h))


def normalise(pixels: np.ndarray, mean, std, layout: str) -> np.ndarray:
    """(N, H, W, 3) RGB 0-255 -> (pixel - mean) / std in the model's layout, float32."""
    x = (pixels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)
