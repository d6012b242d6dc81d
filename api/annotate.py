"""Draw detections on a copy of the image, legible at any size, and encode it as JPEG.

Everything happens in memory per request: no temporary files are shared between requests.
"""
from __future__ import annotations

import colorsys
import io
import zlib

from PIL import Image, ImageDraw, ImageFont

from contract import Detection


def _colour(label: str) -> tuple[int, int, int]:
    hue = (zlib.crc32(label.encode()) % 360) / 360
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def annotate(image: Image.Image, detections: list[Detection], quality: int = 90) -> bytes:
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    short_side = min(canvas.size)
    line = max(2, round(short_side / 250))
    font = ImageFont.load_default(size=max(12, round(short_side / 35)))
    for d in detections:
        x1, y1, x2, y2 = d.box
        colour = _colour(d.label)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=line)
        text = f"{d.label} {d.score * 100:.0f}%"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        text_w, text_h = right - left, bottom - top
        pad = max(2, line)
        label_y = y1 - text_h - 2 * pad if y1 - text_h - 2 * pad >= 0 else y1
        draw.rectangle([x1, label_y, x1 + text_w + 2 * pad, label_y + text_h + 2 * pad], fill=colour)
        draw.text((x1 + pad - left, label_y + pad - top), text, fill=(0, 0, 0), font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
