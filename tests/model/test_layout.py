"""Batch tensors in sequence positions of a packed VLBatch (groundattn/model/inputs.py)."""

import pytest
import torch

from groundattn.model import pack
from groundattn.model.inputs import grounding_mask, pad_stack, slot_mask, span_mask


def _batch():
    # Sample 0: 5 text tokens, 3 regions (positions 5, 6, 7); sample 1: 3 text tokens, 2 regions (3, 4).
    return pack(
        [[101, 1, 2, 3, 102], [101, 4, 102]],
        [[0] * 5, [0] * 3],
        [torch.zeros(3, 2), torch.zeros(2, 2)],
        [torch.zeros(3, 4), torch.zeros(2, 4)],
    )


def test_grounding_in_sequence_positions():
    batch = _batch()
    g = grounding_mask(batch, [[(1, 2), (2, 2)], [(1, 1)]])
    assert g.shape == (2, 9, 9)  # N = max(5 + 3 + 1, 3 + 2 + 1)
    assert g.nonzero().tolist() == [[0, 1, 7], [0, 2, 7], [1, 1, 4]]
    with pytest.raises(ValueError, match="region slot"):
        grounding_mask(batch, [[], [(1, 2)]])  # sample 1 has slots 0 and 1 only


def test_spans_slots_and_padding():
    batch = _batch()
    spans = span_mask(batch, [[(1, 3)], [(1, 2), (0, 1)]])
    assert spans.shape[:2] == (2, 2)
    assert spans[0, 0].nonzero().flatten().tolist() == [1, 2] and not spans[0, 1].any()
    assert spans[1, 1].nonzero().flatten().tolist() == [0]
    slots = slot_mask(batch, [[[1, 2]], [[1], []]], P=2)
    assert slots[0, 0].nonzero().flatten().tolist() == [6, 7]
    assert slots[1, 0].nonzero().flatten().tolist() == [4] and not slots[1, 1].any()
    pairs = pad_stack([[(0, 1, 3)], []], 3)
    assert pairs.tolist() == [[[0, 1, 3]], [[-100, -100, -100]]]


def test_candidates_are_every_region_but_the_whole_image():
    batch = _batch()  # regions at positions 5, 6, 7 (sample 0) and 3, 4 (sample 1); r0 first
    assert batch.candidate_mask.nonzero().tolist() == [[0, 6], [0, 7], [1, 4]]
