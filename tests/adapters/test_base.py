"""Tests of groundattn/adapters/base.py: a grounding in input columns moved to sequence positions."""

import pytest
import torch

from groundattn.adapters import (
    GroundingError,
    concatenated_layout,
    ground,
    token_region_matrix,
)

# Two samples, T = 4 text columns, R = 3 region columns, N = 7.
# Sample 0: 4 text tokens, 3 regions. Sample 1: 2 text tokens then 2 padding
# columns (in the middle of the sequence), 2 regions then 1 padding column.
TEXT_VALID = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()
REGION_VALID = torch.tensor([[1, 1, 1], [1, 1, 0]]).bool()
PAIRS = [[(1, 2), (2, 0), (2, 1)], [(1, 1)]]


def test_concatenated_layout_by_hand():
    layout = concatenated_layout(TEXT_VALID, REGION_VALID)
    assert layout.text_positions.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert layout.region_positions.tolist() == [[4, 5, 6], [4, 5, 6]]
    assert layout.text_mask.int().tolist() == [[1, 1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0]]
    assert layout.region_mask.int().tolist() == [[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1, 0]]
    assert layout.valid_mask.int().tolist() == [[1] * 7, [1, 1, 0, 0, 1, 1, 0]]
    assert torch.equal(layout.text_valid, TEXT_VALID)
    assert torch.equal(layout.region_valid, REGION_VALID)


def test_ground_pairs_and_matrix_agree_with_hand_positions():
    layout = concatenated_layout(TEXT_VALID, REGION_VALID)
    from_pairs = ground(layout, PAIRS)
    from_matrix = ground(layout, token_region_matrix(PAIRS, 4, 3))
    expected = torch.zeros(2, 7, 7, dtype=torch.bool)
    for b, i, j in [(0, 1, 6), (0, 2, 4), (0, 2, 5), (1, 1, 5)]:
        expected[b, i, j] = True
    assert torch.equal(from_pairs.grounding, expected)
    assert torch.equal(from_matrix.grounding, expected)
    assert torch.equal(from_pairs.text_mask, layout.text_mask)
    assert torch.equal(from_pairs.region_mask, layout.region_mask)


def test_empty_grounding_is_all_false():
    layout = concatenated_layout(TEXT_VALID, REGION_VALID)
    assert not ground(layout, [[], []]).grounding.any()


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (
            [[], [(2, 0)]],
            "sample 1 grounds text column 2 to region column 0, but that text token is padding",
        ),
        (
            [[], [(1, 2)]],
            "sample 1 grounds text column 1 to region column 2, but that region is padding",
        ),
        ([[(4, 0)], []], r"grounding pair \(text 4, region 0\) of sample 0 is outside"),
        ([[]], "grounding has 1 samples, the batch 2"),
    ],
)
def test_groundings_that_do_not_fit_the_batch_are_refused(pairs, message):
    layout = concatenated_layout(TEXT_VALID, REGION_VALID)
    with pytest.raises(GroundingError, match=message):
        ground(layout, pairs)


def test_matrix_of_the_wrong_shape_is_refused():
    layout = concatenated_layout(TEXT_VALID, REGION_VALID)
    with pytest.raises(GroundingError, match=r"\(B, T, R\) = \(2, 4, 3\)"):
        ground(layout, torch.zeros(2, 3, 4, dtype=torch.bool))


def test_left_padded_text_is_located_by_its_mask():
    # A tokenizer with padding_side="left": the padding leads, the text follows.
    layout = concatenated_layout(torch.tensor([[0, 0, 1, 1]]).bool(), torch.tensor([[1, 1]]).bool())
    seq = ground(layout, [[(3, 1)]])
    assert seq.text_mask.int().tolist() == [[0, 0, 1, 1, 0, 0]]
    assert seq.region_mask.int().tolist() == [[0, 0, 0, 0, 1, 1]]
    assert seq.grounding.nonzero().tolist() == [[0, 3, 5]]
    with pytest.raises(GroundingError, match="that text token is padding"):
        ground(layout, [[(0, 1)]])
