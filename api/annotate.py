"""Draw detections on a copy of the image, legible at any size, and encode it as JPEG.

Everything happens in memory per request: no temporary files are shared between requests.
What one annotated answer costs is bounded whatever the upload: the drawing is made on a copy
of at most MAX_DRAWN_PIXELS (the full-size image is read once by the resize, never copied), and
at most MAX_DRAWN_BOXES boxes are drawn, the highest scores. Boxes, line widths and label fonts
follow the drawn size.
"""
from __future__ import annotations

import colorsys
import dataclasses
import io
import math
import zlib

from PIL import Image, ImageDraw, ImageFont

from contract import Detection

# 4 MP: larger than any screen shows without zooming (a 2560x1600 display is 4.1 MP), so a
# viewer loses nothing, and the drawn copy is a fixed ~12 MB of RGB whatever the upload (up to
# MAX_IMAGE_PIXELS), with a JPEG answer of a few MB at most.
MAX_DRAWN_PIXELS = 4_000_000
# Past a few hundred boxes the labels cover each other and the image: more cannot be read, and
# each box costs a text rendering. The highest scores are the ones worth seeing.
MAX_DRAWN_BOXES = 300


@dataclasses.dataclass(frozen=True)
class Annotated:
    jpeg: bytes
    drawn: int                # boxes drawn (the highest scores, at most MAX_DRAWN_BOXES)
    size: tuple[int, int]     # the drawn image's width and height


@dataclasses.dataclass(frozen=True)
class _Style:
    line: int
    pad: int
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont

    @classmethod
    def for_size(cls, size: tuple[int, int]) -> "_Style":
        short_side = min(size)
        line = max(2, round(short_side / 250))
        return cls(line=line, pad=line, font=ImageFont.load_default(size=max(12, round(short_side / 35))))


def drawn_size(size: tuple[int, int]) -> tuple[int, int]:
    """`size` scaled down (aspect kept) to at most MAX_DRAWN_PIXELS; unchanged when smaller."""
    width, height = size
    scale = math.sqrt(MAX_DRAWN_PIXELS / (width * height))
    if scale >= 1:
        return size
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def annotate(image: Image.Image, detections: list[Detection], full_size: tuple[int, int] | None = None,
             quality: int = 90) -> Annotated:
    """`detections`' boxes are in pixels of `full_size` (the uploaded image; default: `image`'s size)."""
    full_w, full_h = full_size or image.size
    size = drawn_size(image.size)
    # Never a full-size copy: an integer box reduction first (reducing_gap=1), then bilinear,
    # so the resize's own intermediates stay a few times the drawn size, however large the upload.
    canvas = (image.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0) if size != image.size
              else image.copy())
    if canvas.mode != "RGB":
        canvas = canvas.convert("RGB")
    chosen = sorted(detections, key=lambda d: d.score, reverse=True)[:MAX_DRAWN_BOXES]
    draw, style = ImageDraw.Draw(canvas), _Style.for_size(size)
    scale = (size[0] / full_w, size[1] / full_h)
    for d in reversed(chosen):   # the highest score last: its label is on top
        _draw_one(draw, style, d, scale)
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=quality)
    return Annotated(jpeg=buffer.getvalue(), drawn=len(chosen), size=size)


def _draw_one(draw: ImageDraw.ImageDraw, style: _Style, d: Detection, scale: tuple[float, float]) -> None:
    x1, x2 = (round(v * scale[0]) for v in (d.box[0], d.box[2]))
    y1, y2 = (round(v * scale[1]) for v in (d.box[1], d.box[3]))
    colour = _colour(d.label)
    draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=colour, width=style.line)
    text = f"{d.label} {d.score * 100:.0f}%"
    left, top, right, bottom = draw.textbbox((0, 0), text, font=style.font)
    text_w, text_h, pad = right - left, bottom - top, style.pad
    label_y = y1 - text_h - 2 * pad if y1 - text_h - 2 * pad >= 0 else y1
    draw.rectangle([x1, label_y, x1 + text_w + 2 * pad, label_y + text_h + 2 * pad], fill=colour)
    draw.text((x1 + pad - left, label_y + pad - top), text, fill=(0, 0, 0), font=style.font)


def _colour(label: str) -> tuple[int, int, int]:
    hue = (zlib.crc32(label.encode()) % 360) / 360
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)
