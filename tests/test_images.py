"""Decoding: the format allow-list, size caps from the header, modes to correct RGB."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from dataplane.images import ImageLimits, decode_image
from errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat
from tests.support import imaging
from tests.support.imaging import encode, solid


def rgb_at(decoded, xy=(1, 1)):
    return decoded.image.getpixel(xy)


@pytest.mark.parametrize("fmt,params", [
    ("JPEG", {"quality": 95}), ("PNG", {}), ("BMP", {}), ("GIF", {}), ("WEBP", {"lossless": True}),
    ("TIFF", {}),
])
def test_allowed_formats_decode_to_rgb(fmt, params):
    decoded = decode_image(encode(solid((200, 30, 30)), fmt, **params))
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (32, 24)
    assert np.allclose(rgb_at(decoded), (200, 30, 30), atol=6)


def test_png_named_jpg_is_sniffed_by_content():
    assert decode_image(imaging.png()).format == "PNG"


def test_gif_uses_first_frame():
    frames = [solid((255, 0, 0)), solid((0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert np.allclose(rgb_at(decode_image(data)), (255, 0, 0), atol=4)


def test_multiframe_tiff_is_415():
    frames = [solid((255, 0, 0)), solid((0, 0, 255))]
    data = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedImageFormat):
        decode_image(data)


@pytest.mark.parametrize("fmt", ["PSD", "EPS", "FITS", "JPEG2000", "ICO", "PPM"])
def test_formats_outside_the_allow_list_are_415(fmt):
    if fmt == "PSD":
        data = b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03\x00\x00\x00\x10\x00\x00\x00\x10\x00\x08\x00\x03" + b"\x00" * 64
    elif fmt == "EPS":
        data = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
    elif fmt == "FITS":
        data = b"SIMPLE  =                    T" + b" " * 50 + b"BITPIX  =                    8"
    else:
        img = solid((10, 200, 10), mode="RGB")
        data = encode(img, fmt)
    with pytest.raises(UnsupportedImageFormat):
        decode_image(data)


def test_truncated_jpeg_is_400():
    data = encode(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG", quality=90)
    for cut in (len(data) // 2, 200):
        with pytest.raises(InvalidImage):
            decode_image(data[:cut])


def test_pixel_bomb_header_is_refused_fast_without_decoding():
    data = imaging.png_header_claiming(20000, 20000)
    assert len(data) < 200
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge):
        decode_image(data)
    assert time.perf_counter() - started < 0.1


def test_pixel_and_side_caps():
    limits = ImageLimits(max_pixels=1000, max_side=100)
    with pytest.raises(ImageTooLarge):
        decode_image(imaging.png(size=(40, 30)), limits)  # 1200 px
    with pytest.raises(ImageTooLarge):
        decode_image(imaging.png(size=(101, 1)), limits)
    assert decode_image(imaging.png(size=(40, 25)), limits).image.size == (40, 25)


def test_exif_orientation_6_gives_the_upright_image():
    # Stored 40x20 with a red left half; orientation 6 = rotate 90° clockwise to view.
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encode(stored, "JPEG", quality=95, exif=exif))
    assert decoded.image.size == (20, 40)
    assert np.allclose(decoded.image.getpixel((10, 5)), (255, 0, 0), atol=20)   # top is red
    assert np.allclose(decoded.image.getpixel((10, 35)), (0, 0, 255), atol=20)  # bottom is blue


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_every_exif_orientation_gives_pillow_s_upright_pixels(orientation, fmt):
    """decode_image applies the orientation in place; the pixels are those of Pillow's own
    exif_transpose of the same file, and the reported size is the upright one."""
    from PIL import ImageOps

    rng = np.random.default_rng(orientation)
    stored = Image.fromarray(rng.integers(0, 256, (20, 40, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, fmt, exif=exif)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data)).convert("RGB"))
    decoded = decode_image(data)
    assert decoded.image.size == expected.size == (decoded.width, decoded.height)
    assert decoded.image.size == ((20, 40) if orientation >= 5 else (40, 20))
    assert np.array_equal(np.asarray(decoded.image), np.asarray(expected))


def test_cmyk_jpeg_gives_correct_colours():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    decoded = decode_image(encode(cmyk, "JPEG", quality=95))
    assert np.allclose(rgb_at(decoded), (255, 0, 0), atol=10)


def test_16bit_png_keeps_its_brightness():
    values = np.full((8, 8), 40000, dtype=np.uint16)  # 40000/65535 ≈ 61% grey
    decoded = decode_image(encode(Image.fromarray(values), "PNG"))
    assert np.allclose(rgb_at(decoded), (155, 155, 155), atol=2)


def test_palette_with_transparency_is_flattened_on_white():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    img.putpixel((0, 0), 1)
    img.info["transparency"] = 0  # index 0 (red) transparent
    decoded = decode_image(encode(img, "PNG", transparency=0))
    assert rgb_at(decoded, (3, 3)) == (255, 255, 255)
    assert rgb_at(decoded, (0, 0)) == (0, 0, 255)


@pytest.mark.parametrize("mode,color,expected", [
    ("RGBA", (255, 0, 0, 0), (255, 255, 255)),      # fully transparent: background
    ("RGBA", (255, 0, 0, 255), (255, 0, 0)),        # opaque: the colour
    ("RGBA", (0, 0, 0, 128), (127, 127, 127)),      # half: blended
    ("LA", (0, 0), (255, 255, 255)),
    ("LA", (50, 255), (50, 50, 50)),
    ("L", 77, (77, 77, 77)),
    ("1", 1, (255, 255, 255)),
])
def test_modes_become_rgb(mode, color, expected):
    decoded = decode_image(encode(Image.new(mode, (8, 8), color), "PNG"))
    assert decoded.image.mode == "RGB"
    assert np.allclose(rgb_at(decoded), expected, atol=2)


def test_large_jpeg_under_the_caps_decodes():
    img = Image.new("RGB", (7000, 5000), (10, 120, 200))
    decoded = decode_image(encode(img, "JPEG", quality=80))
    assert decoded.image.size == (7000, 5000)


def test_errors_carry_no_internal_detail():
    with pytest.raises(InvalidImage) as info:
        decode_image(b"\xff\xd8\xff\xe0" + b"garbage" * 20)
    assert "<" not in info.value.message and "object at" not in info.value.message
