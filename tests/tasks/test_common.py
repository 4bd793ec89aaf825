import pytest
import torch

from groundattn.tasks.common import global_mean


def _sum_with(*others):
    """A stand-in for the all-reduce: adds the other process's values, call by call."""
    values = iter(others)
    return lambda t: t + next(values)


def test_global_mean_weights_each_share_by_its_count():
    # Process A: mean 2.0 over 3 tokens; process B: mean 6.0 over 1 token; global mean 12 / 4 = 3.
    a = global_mean(
        torch.tensor(2.0), torch.tensor(3), _sum_with(1.0, 1.0)
    )  # world, then B's count
    b = global_mean(torch.tensor(6.0), torch.tensor(1), _sum_with(1.0, 3.0))
    assert (a + b).item() / 2 == pytest.approx(3.0)  # what averaging the gradients of A and B gives
    assert global_mean(torch.tensor(2.0), torch.tensor(3), None).item() == 2.0
