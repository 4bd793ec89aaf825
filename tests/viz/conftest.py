"""Fixtures of the visualisation tests: a plain picture and boxes on it."""

import matplotlib
import pytest
import torch
from PIL import Image
from viz_helpers import BACKGROUND

matplotlib.use("Agg")


@pytest.fixture
def image() -> Image.Image:
    """A 200 × 100 grey picture."""
    return Image.new("RGB", (200, 100), BACKGROUND)


@pytest.fixture
def boxes() -> torch.Tensor:
    """r0 (whole image) then three boxes that do not overlap, pixel x1 y1 x2 y2."""
    return torch.tensor(
        [[0, 0, 200, 100], [10, 20, 60, 80], [80, 20, 130, 80], [150, 20, 190, 80]],
        dtype=torch.float,
    )
