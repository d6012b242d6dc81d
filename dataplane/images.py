"""The one place that turns uploaded bytes into an upright RGB image, or a precise error.

Order matters for safety: sniff the content (never the filename or header), open with a
decoder allow-list, check the size from the header before any pixel is decoded, then decode
with truncated images refused, apply EXIF orientation and normalise the mode to RGB.
"""
from __future__ import annotations

import dataclasses
import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat

# Pillow formats we decode. Everything else registered in Pillow (PSD, EPS, FITS, JPEG 2000,
# ...) is refused before its decoder runs.
ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")

# Image formats we recognise by their magic bytes but do not decode: these get 415 instead of
# "not an image". Checked on the raw bytes, so no decoder outside the allow-list ever runs.
_OTHER_IMAGE_SIGNATURES = (
    (b"8BPS", "PSD"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"SIMPLE  =", "FITS"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"icns", "ICNS"),
    (b"DDS ", "DDS"),
    (b"qoif", "QOI"),
    (b"gimp xcf", "XCF"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
    (b"\x01\xda", "SGI"),
    (b"\x0a\x05\x01", "PCX"),
    (b"P1", "PBM"), (b"P2", "PGM"), (b"P3", "PPM"),
    (b"P4", "PBM"), (b"P5", "PGM"), (b"P6", "PPM"),
)
_ISO_BMFF_BRANDS = (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"avis")

# Background for flattening transparency: white, as viewers show transparent documents.
_BACKGROUND = (255, 255, 255)

# Truncated files are refused, never padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # mode RGB, upright; smaller than the file when decoded in draft mode
    format: str
    width: int          # the upright image's full size, as the file describes it
    height: int


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 40_000_000
    max_side: int = 10_000


def decode_image(data: bytes, limits: ImageLimits = ImageLimits(),
                 size_hint: tuple[int, int] | None = None) -> DecodedImage:
    """`size_hint` (height, width): the image will only be resized down to this, so a JPEG
    may be decoded at 1/2, 1/4 or 1/8 scale (DCT scaling), never below twice the hint: the
    final bilinear resize then still averages several pixels into one, and the sample photos
    keep their top label (at exactly the hint one of them did not)."""
    if not data:
        raise InvalidImage("The uploaded image is empty (0 bytes).")
    _refuse_other_formats(data)
    try:
        with warnings.catch_warnings():
            # Our own pixel cap is checked below, before decoding; Pillow's bomb warning and
            # its warnings about corrupt metadata (EXIF, TIFF tags) would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            _check_size(img.size, limits)
            fmt = img.format or "unknown"
            if fmt == "TIFF" and getattr(img, "n_frames", 1) > 1:
                raise UnsupportedImageFormat(
                    "Multi-page TIFF files are not supported; send a single-page image."
                )
            img.seek(0)  # GIF/WEBP animations: the first frame only
            full_size = img.size
            if size_hint and fmt == "JPEG":
                side = 2 * max(size_hint)  # max: EXIF rotation may swap the sides
                img.draft("RGB", (side, side))
            stored_size = img.size
            img.load()
            # In place: without an orientation to apply, exif_transpose would return a copy
            # of the whole image, a large part of decoding a photo at full size.
            ImageOps.exif_transpose(img, in_place=True)
            if img.size != stored_size:  # rotated by 90 or 270 degrees
                full_size = full_size[::-1]
            rgb = to_rgb(img)
    except (ImageTooLarge, UnsupportedImageFormat):
        raise
    except Image.DecompressionBombError:
        raise ImageTooLarge(_too_large_message(limits)) from None
    except UnidentifiedImageError:
        raise InvalidImage(
            "The uploaded file is not a supported image. Supported formats: "
            "JPEG, PNG, BMP, GIF, WEBP, TIFF."
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError,
            KeyError, ZeroDivisionError, MemoryError, OverflowError, RecursionError, struct.error):
        # Truncated or corrupt data. Pillow's messages carry object reprs: not echoed.
        raise InvalidImage("The uploaded image is truncated or corrupt.") from None
    return DecodedImage(image=rgb, format=fmt, width=full_size[0], height=full_size[1])


def _refuse_other_formats(data: bytes) -> None:
    head = data[:32]
    for signature, name in _OTHER_IMAGE_SIGNATURES:
        if head.startswith(signature):
            # PNM signatures are two ASCII letters: only count them with the whitespace
            # that follows in a real header.
            if name in ("PBM", "PGM", "PPM") and (len(head) < 3 or head[2:3] not in b" \t\r\n"):
                continue
            raise UnsupportedImageFormat(_unsupported_message(name))
    if head[4:8] == b"ftyp" and head[8:12] in _ISO_BMFF_BRANDS:
        raise UnsupportedImageFormat(_unsupported_message("HEIF/AVIF"))


def _unsupported_message(name: str) -> str:
    return (f"{name} images are not supported. Supported formats: "
            "JPEG, PNG, BMP, GIF (first frame), WEBP, single-page TIFF.")


def _check_size(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidImage("The image has no pixels.")
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        raise ImageTooLarge(_too_large_message(limits))


def _too_large_message(limits: ImageLimits) -> str:
    return (f"The image is too large: at most {limits.max_pixels:,} pixels and "
            f"{limits.max_side:,} pixels a side are accepted.")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB with correct colours; transparency flattened on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_high_depth_to_uint8(img)).convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    elif mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
        mode = "RGBA"
    elif mode == "L" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        background = Image.new("RGB", img.size, _BACKGROUND)
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    values = np.asarray(img)
    if img.mode == "F":
        values = np.nan_to_num(values.astype(np.float64))
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
        return np.clip(values * scale, 0, 255).astype(np.uint8)
    values = values.astype(np.int64)
    if values.max(initial=0) > 255 or img.mode.startswith("I;16"):
        values = values >> 8  # 16-bit samples: keep the high byte
    return np.clip(values, 0, 255).astype(np.uint8)
