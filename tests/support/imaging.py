"""Image bytes for tests, made with Pillow in memory."""
from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def solid(color=(200, 30, 30), size=(32, 24), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def jpeg(size=(32, 24), color=(200, 30, 30)) -> bytes:
    return encode(solid(color, size), "JPEG", quality=95)


def png(size=(32, 24), color=(200, 30, 30)) -> bytes:
    return encode(solid(color, size), "PNG")


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims a huge size, with a few bytes of IDAT: a pixel bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def jpeg_file(size=(32, 24)):
    """A JPEG as an open file, the way a form upload carries it."""
    import io
    return io.BytesIO(jpeg(size=size))
