"""Fixtures of the visualisation tests: a plain picture and boxes on it; the small
embedded data set and two untrained tiny runs for the tests that run models."""

from pathlib import Path

import matplotlib
import pytest
import torch
from PIL import Image
from viz_helpers import BACKGROUND

from groundattn.data.extractor import FEATURE_DIM

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


@pytest.fixture(scope="session")
def scenes(small_scenes):
    """The small embedded data set (the suite's shared one)."""
    return small_scenes


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory, scenes):
    """Two untrained tiny VGP runs exported as a run's model/ directory (no training)."""
    from groundattn.config import VGPConfig, load_config
    from groundattn.model import VLEncoder, preset
    from groundattn.tasks.vgp import VGPTask
    from groundattn.tasks.vgp.supervision import Direct
    from groundattn.train.checkpoint import save_model

    config = load_config(
        VGPConfig,
        Path(__file__).parents[2] / "configs" / "vgp" / "tiny.yaml",
        # Captions as long as VGPDataset's default, which the tests build beside the report.
        [f"data.root={scenes}", "supervision.method=direct", "data.max_caption_tokens=32"],
    )
    identity = {"task": "vgp", **config.model_dump(mode="json")}  # what a run records
    dirs = {}
    for seed, name in enumerate(("direct", "none")):
        torch.manual_seed(seed)
        task = VGPTask(VLEncoder(preset("tiny", visual_feature_dim=FEATURE_DIM)), Direct())
        dirs[name] = save_model(tmp_path_factory.mktemp(name) / "model", task, identity)
    return dirs
