"""The hand-made region features (groundattn/data/extractor.py)."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from groundattn.data.extractor import FEATURE_BLOCKS, FEATURE_DIM, extract_regions, grid_boxes


def _picture(colour_left: str, colour_right: str, shape_right: str = "square") -> Image.Image:
    image = Image.new("RGB", (96, 64), (100, 100, 100))
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 16, 39, 47), fill=colour_left)
    if shape_right == "square":
        draw.rectangle((56, 16, 87, 47), fill=colour_right)
    else:
        draw.ellipse((56, 16, 87, 47), fill=colour_right)
    return image


BOXES = np.array([[8, 16, 40, 48], [56, 16, 88, 48]], dtype=np.float32)


def test_blocks_tile_the_feature_vector() -> None:
    covered = sorted((s.start, s.stop) for s in FEATURE_BLOCKS.values())
    assert covered[0][0] == 0 and covered[-1][1] == FEATURE_DIM
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:], strict=False))


def test_red_and_blue_differ_in_colour_not_in_shape() -> None:
    features = extract_regions(_picture("red", "blue"), BOXES)
    assert features.shape == (2, FEATURE_DIM) and features.dtype == np.float32
    red, blue = features
    hue = FEATURE_BLOCKS["hue_histogram"]
    assert np.argmax(red[hue]) != np.argmax(blue[hue])
    assert np.abs(red[hue] - blue[hue]).sum() > 0.5
    shape = FEATURE_BLOCKS["shape_map"]
    assert np.allclose(red[shape], blue[shape], atol=0.05)


def test_squares_and_circles_differ_in_shape() -> None:
    square, circle = extract_regions(_picture("red", "red", "circle"), BOXES)
    shape, edges = FEATURE_BLOCKS["shape_map"], FEATURE_BLOCKS["edge_orientation"]
    assert np.abs(square[shape] - circle[shape]).sum() > 3
    assert np.abs(square[edges] - circle[edges]).sum() > 0.3
    # The corners of the circle's box are background, the square's are not.
    assert circle[shape][0] < 0.3 < square[shape][0]


def test_extraction_is_deterministic_and_translation_invariant() -> None:
    image = _picture("green", "green")
    first, second = extract_regions(image, BOXES), extract_regions(image, BOXES)
    assert np.array_equal(first, second)
    assert np.allclose(first[0], first[1], atol=1e-5)


def test_odd_boxes_and_images() -> None:
    image = _picture("yellow", "white").convert("L")
    boxes = np.array([[-10, -10, 200, 200], [50, 50, 50, 50], [95.5, 63.5, 120, 90]])
    features = extract_regions(image, boxes)
    assert features.shape == (3, FEATURE_DIM) and np.isfinite(features).all()
    assert extract_regions(image, np.zeros((0, 4))).shape == (0, FEATURE_DIM)


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (2, 3), (4, 4)])
def test_grid_boxes_tile_the_image(rows: int, cols: int) -> None:
    boxes = grid_boxes(120, 90, rows, cols)
    assert boxes.shape == (rows * cols, 4) and boxes.dtype == np.float32
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert np.isclose(areas.sum(), 120 * 90)
    assert boxes[0].tolist() == [0, 0, 120 / cols, 90 / rows]
    assert boxes[-1, 2:].tolist() == [120, 90]
