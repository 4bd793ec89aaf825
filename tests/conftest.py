"""Fixtures shared by the whole test suite."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same random state."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def small_scenes(tmp_path_factory):
    """The small embedded data set (seed 0), generated once per test session; read-only."""
    from groundattn.data.scenes import prepare_scenes

    return prepare_scenes(tmp_path_factory.mktemp("scenes") / "small", size="small", seed=0)
