"""models/preprocessing.py directly: `place` in stretch and letterbox modes (shape, dtype, grey
padding, centring, aspect ratio), `Placement.to_image` mapping model-input boxes back to the
image (and clipping), and `normalise` (mean/std, NHWC or NCHW, contiguous float32)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from models.preprocessing import LETTERBOX_GREY, Placement, normalise, place

COLOUR = (200, 50, 10)


def solid(width: int, height: int, colour=COLOUR) -> Image.Image:
    return Image.new("RGB", (width, height), colour)


def with_white_square(width: int, height: int, box: tuple[int, int, int, int]) -> Image.Image:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    pixels[y1:y2, x1:x2] = 255
    return Image.fromarray(pixels)


def bright_box(pixels: np.ndarray) -> np.ndarray:
    """xyxy (exclusive end) of the pixels brighter than mid-grey, as a (1, 4) array."""
    ys, xs = np.nonzero(pixels.mean(axis=2) > 160)
    return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float64)


def forward(placement: Placement, boxes: np.ndarray) -> np.ndarray:
    """Image boxes -> model-input boxes: the inverse of to_image, written from the fields."""
    out = boxes.astype(np.float64).copy()
    out[:, [0, 2]] = out[:, [0, 2]] * placement.scale_x + placement.pad_x
    out[:, [1, 3]] = out[:, [1, 3]] * placement.scale_y + placement.pad_y
    return out


# --- stretch ---------------------------------------------------------------------------------

def test_stretch_shape_dtype_and_placement():
    pixels, placement = place(solid(40, 20), (10, 16), "stretch")
    assert pixels.shape == (10, 16, 3)
    assert pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels, np.broadcast_to(np.float32(COLOUR), (10, 16, 3)))
    assert (placement.width, placement.height) == (40, 20)
    assert (placement.pad_x, placement.pad_y) == (0.0, 0.0)
    assert placement.scale_x == pytest.approx(16 / 40) and placement.scale_y == pytest.approx(10 / 20)


def test_stretch_to_image_maps_input_corners_to_image_corners():
    _, placement = place(solid(40, 20), (10, 16), "stretch")
    corners = np.array([[0, 0, 16, 10], [8, 5, 8, 5], [0, 0, 4, 2.5]], dtype=np.float32)
    np.testing.assert_allclose(placement.to_image(corners),
                               [[0, 0, 40, 20], [20, 10, 20, 10], [0, 0, 10, 5]], atol=1e-9)


def test_stretch_at_model_size_keeps_the_pixels():
    image = with_white_square(16, 10, (2, 3, 7, 8))
    pixels, placement = place(image, (10, 16), "stretch")
    np.testing.assert_array_equal(pixels, np.asarray(image, dtype=np.float32))
    assert (placement.scale_x, placement.scale_y) == (1.0, 1.0)


def test_stretch_content_lands_where_to_image_says():
    original = (40, 20, 80, 60)
    image = with_white_square(120, 80, original)
    pixels, placement = place(image, (40, 60), "stretch")
    mapped = placement.to_image(bright_box(pixels))
    np.testing.assert_allclose(mapped[0], original, atol=2.5)


# --- letterbox -------------------------------------------------------------------------------

@pytest.mark.parametrize("width, height", [(60, 30), (64, 20), (30, 60), (21, 64)])
def test_letterbox_pads_the_short_side_with_grey_and_centres(width, height):
    size = (32, 32)
    pixels, placement = place(solid(width, height), size, "letterbox")
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.float32

    content = np.all(pixels == np.float32(COLOUR), axis=2)
    grey = np.all(pixels == np.float32(LETTERBOX_GREY), axis=2)
    assert np.all(content | grey), "pixels that are neither image nor padding"
    ys, xs = np.nonzero(content)
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    assert content[y1:y2, x1:x2].all(), "the image is not one rectangle"
    assert content.sum() == (x2 - x1) * (y2 - y1)

    # The long side fills the input; the short side is padded equally (within one pixel).
    if width >= height:
        assert (x1, x2) == (0, 32)
        assert abs(y1 - (32 - y2)) <= 1 and y1 > 0
    else:
        assert (y1, y2) == (0, 32)
        assert abs(x1 - (32 - x2)) <= 1 and x1 > 0
    assert (placement.pad_x, placement.pad_y) == (x1, y1)

    # Aspect ratio kept (to rounding of the resized size).
    assert (x2 - x1) / (y2 - y1) == pytest.approx(width / height, rel=0.06)
    assert placement.scale_x == pytest.approx(placement.scale_y, rel=0.06)


def test_letterbox_same_aspect_fills_the_input():
    pixels, placement = place(solid(64, 32), (16, 32), "letterbox")
    np.testing.assert_array_equal(pixels, np.broadcast_to(np.float32(COLOUR), (16, 32, 3)))
    assert (placement.pad_x, placement.pad_y) == (0.0, 0.0)


def test_letterbox_to_image_inverts_the_placement_within_a_pixel():
    rng = np.random.default_rng(3)
    width, height = 97, 41
    _, placement = place(solid(width, height), (64, 64), "letterbox")
    x = np.sort(rng.uniform(0, width, size=(50, 2)), axis=1)
    y = np.sort(rng.uniform(0, height, size=(50, 2)), axis=1)
    boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    np.testing.assert_allclose(placement.to_image(forward(placement, boxes)), boxes, atol=1.0)


def test_letterbox_content_lands_where_to_image_says():
    original = (30, 20, 70, 50)
    image = with_white_square(120, 60, original)
    pixels, placement = place(image, (64, 64), "letterbox")
    assert placement.pad_y > 0
    found = bright_box(pixels)
    assert found[0, 1] > placement.pad_y  # the square sits below the top padding
    np.testing.assert_allclose(placement.to_image(found)[0], original, atol=2.0)


def test_letterbox_input_corners_and_padding_map_to_image_edges():
    pixels, placement = place(solid(60, 30), (32, 32), "letterbox")
    assert placement.pad_y == 8.0 and placement.pad_x == 0.0
    content_corners = np.array([[0, 8, 32, 24]], dtype=np.float64)
    np.testing.assert_allclose(placement.to_image(content_corners), [[0, 0, 60, 30]], atol=1.0)
    # A box reaching into the padding, or past the input, is clipped to the image.
    overhanging = np.array([[-10, 0, 40, 32], [0, 0, 32, 4]], dtype=np.float64)
    mapped = placement.to_image(overhanging)
    np.testing.assert_allclose(mapped[0], [0, 0, 60, 30])
    np.testing.assert_allclose(mapped[1], [0, 0, 60, 0])


def test_to_image_does_not_modify_its_input():
    _, placement = place(solid(60, 30), (32, 32), "letterbox")
    boxes = np.array([[1, 9, 20, 20]], dtype=np.int64)
    placement.to_image(boxes)
    np.testing.assert_array_equal(boxes, [[1, 9, 20, 20]])


# --- normalise -------------------------------------------------------------------------------

MEAN, STD = (1.0, 2.0, 3.0), (2.0, 4.0, 8.0)


def batch() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, size=(2, 4, 5, 3)).astype(np.float32)


def expected(pixels: np.ndarray) -> np.ndarray:
    out = np.empty_like(pixels, dtype=np.float64)
    for c in range(3):
        out[..., c] = (pixels[..., c].astype(np.float64) - MEAN[c]) / STD[c]
    return out


def test_normalise_nhwc():
    pixels = batch()
    out = normalise(pixels, MEAN, STD, "NHWC")
    assert out.shape == (2, 4, 5, 3)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(out, expected(pixels), rtol=1e-6)


def test_normalise_nchw_transposes():
    pixels = batch()
    out = normalise(pixels, MEAN, STD, "NCHW")
    assert out.shape == (2, 3, 4, 5)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    reference = expected(pixels)
    np.testing.assert_allclose(out, reference.transpose(0, 3, 1, 2), rtol=1e-6)
    assert out[1, 2, 3, 4] == pytest.approx(reference[1, 3, 4, 2], rel=1e-6)


def test_normalise_other_input_dtypes_give_float32():
    pixels = np.full((1, 2, 2, 3), 255, dtype=np.uint8)
    out = normalise(pixels, (127.5, 127.5, 127.5), (127.5, 127.5, 127.5), "NCHW")
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(out, 1.0)
    out64 = normalise(pixels.astype(np.float64), (0, 0, 0), (255, 255, 255), "NHWC")
    assert out64.dtype == np.float32
    np.testing.assert_allclose(out64, 1.0)
