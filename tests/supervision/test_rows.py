"""Tests of groundattn/supervision/rows.py: supervised rows and their targets."""

import torch

from groundattn.supervision import supervised_rows
from groundattn.supervision.rows import compact_positions, row_targets

from .helpers import grounding_of, mask


def test_supervised_rows_lists_grounded_tokens_and_regions_in_sequence_order():
    g = torch.zeros(2, 8, 8, dtype=torch.bool)
    g[0, 1, 5] = g[0, 2, 5] = True  # sample 0: tokens 1, 2 → region 5
    g[1, 3, 6] = g[1, 3, 7] = True  # sample 1: token 3 → regions 6 and 7
    g[1, 4, 6] = True
    rows, row_mask = supervised_rows(g)
    # Sample 0: 1, 2, 5 (padded with 0); sample 1: 3, 4, 6, 7. Q = 4.
    assert rows.tolist() == [[1, 2, 5, 0], [3, 4, 6, 7]]
    assert row_mask.tolist() == [[True, True, True, False], [True, True, True, True]]


def test_supervised_rows_of_empty_grounding_is_empty():
    rows, row_mask = supervised_rows(torch.zeros(3, 5, 5, dtype=torch.bool))
    assert rows.shape == (3, 0) and row_mask.shape == (3, 0)


def test_compact_positions():
    positions, valid = compact_positions(torch.tensor([[0, 1, 0, 1, 1], [1, 0, 0, 0, 0]]).bool())
    assert positions.tolist() == [[1, 3, 4], [0, 0, 0]]
    assert valid.tolist() == [[True, True, True], [True, False, False]]


def test_row_targets_columns_and_targets():
    # Text 0-2, regions 3-4; tokens 1 and 2 → region 4.
    g = grounding_of(5, [(1, 4), (2, 4)])
    rows, row_mask = supervised_rows(g)  # [1, 2, 4]
    t = row_targets(rows, row_mask, g, mask(5, [0, 1, 2]), mask(5, [3, 4]))
    assert t.is_text_row.tolist() == [[True, True, False]]
    assert t.is_region_row.tolist() == [[False, False, True]]
    assert t.columns.int().tolist() == [[[0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [1, 1, 1, 0, 0]]]
    assert t.target.int().tolist() == [[[0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 1, 1, 0, 0]]]
