import math

import pytest
import torch

from groundattn.supervision.spread import token_spread


def test_spread_by_hand():
    # Sample 0: tokens (1, 0) and (3, 0) masked: centroid (2, 0), distances 1 and 1 → 1 / 2.
    # Sample 1: tokens (0, 1), (0, 3), (4, 2) masked: centroid (4/3, 2), distances
    # √(16/9 + 1), √(16/9 + 1), √(64/9) → mean over the norm of (4/3, 2).
    # Sample 2: one masked token → no spread, not counted. Unmasked tokens are ignored.
    h = torch.tensor(
        [
            [[1.0, 0.0], [3.0, 0.0], [9.0, 9.0]],
            [[0.0, 1.0], [0.0, 3.0], [4.0, 2.0]],
            [[5.0, 5.0], [7.0, 1.0], [0.0, 0.0]],
        ]
    )
    mask = torch.tensor([[True, True, False], [True, True, True], [True, False, False]])
    sums, samples = token_spread((h, 2 * h), mask)
    second = (2 * math.sqrt(16 / 9 + 1) + 8 / 3) / 3 / math.sqrt(16 / 9 + 4)
    assert samples.item() == 2
    assert sums.tolist() == pytest.approx([0.5 + second, 0.5 + second])  # scale-free


def test_identical_tokens_have_no_spread():
    h = torch.ones(2, 4, 3)
    sums, samples = token_spread([h], torch.ones(2, 4, dtype=torch.bool))
    assert samples.item() == 2 and sums.tolist() == [0.0]
