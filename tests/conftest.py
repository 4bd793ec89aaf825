"""Fixtures shared by the whole test suite."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same random state."""
    torch.manual_seed(0)
