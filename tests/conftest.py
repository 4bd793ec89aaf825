"""Fixtures shared by the whole test suite."""

import os

import pytest
import torch

# Tests run tiny tensors, where handing work between intra-op threads costs more
# than it saves: on a busy 2-core machine one thread is up to 80x faster. The
# environment variable gives the same to the runs that tests start in child
# processes, so that their numbers match the in-process ones bit for bit.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same random state."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def small_scenes(tmp_path_factory):
    """The small embedded data set, generated once per test session."""
    from groundattn.data.scenes import prepare_scenes

    return prepare_scenes(tmp_path_factory.mktemp("scenes") / "small", size="small", seed=0)
