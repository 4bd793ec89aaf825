import torch

from groundattn.model import pack


def test_layout_places_each_sample_seamlessly():
    batch = pack(
        [[101, 7, 102, 8, 102], [101, 9, 102]],
        [[0, 0, 0, 1, 1], [0, 0, 0]],
        [torch.ones(2, 3), torch.full((3, 3), 2.0)],
        [torch.rand(2, 4), torch.rand(3, 4)],
    )
    # Sample 0: 5 text, 2 regions, [END] -> 8 tokens; sample 1: 3 text, 3 regions, [END] -> 7.
    assert batch.input_ids.shape == (2, 8)
    assert batch.text_mask[0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert batch.region_mask[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 0]
    assert batch.end_mask[0].tolist() == [0, 0, 0, 0, 0, 0, 0, 1]
    assert batch.text_mask[1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert batch.region_mask[1].tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    assert batch.end_mask[1].tolist() == [0, 0, 0, 0, 0, 0, 1, 0]
    assert batch.valid_mask[1].tolist() == [1, 1, 1, 1, 1, 1, 1, 0]
    # Segments: c1 0, c2 1, regions and [END] 2, padding 0.
    assert batch.segment_ids[0].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert batch.segment_ids[1].tolist() == [0, 0, 0, 2, 2, 2, 2, 0]
    # Positions: text 0.., all regions share the next, [END] the one after.
    assert batch.position_ids[0].tolist() == [0, 1, 2, 3, 4, 5, 5, 6]
    assert batch.position_ids[1].tolist() == [0, 1, 2, 3, 3, 3, 4, 0]
    assert batch.region_valid.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch.region_positions().tolist() == [[5, 6, 7], [3, 4, 5]]
    assert batch.region_features[1, 2].tolist() == [2.0, 2.0, 2.0]
    assert batch.input_ids[0, :5].tolist() == [101, 7, 102, 8, 102]


def test_text_alone_has_no_end_token():
    batch = pack(
        [[101, 5, 102], [101, 102]],
        [[0, 0, 0], [0, 0]],
        [torch.zeros(0, 4)] * 2,
        [torch.zeros(0, 4)] * 2,
    )
    assert batch.input_ids.shape == (2, 3)
    assert not batch.end_mask.any() and not batch.region_mask.any()
    assert batch.valid_mask.tolist() == [[1, 1, 1], [1, 1, 0]]


def test_mismatched_lengths_raise():
    import pytest

    with pytest.raises(ValueError, match="sample 0"):
        pack([[101, 102]], [[0]], [torch.zeros(1, 2)], [torch.zeros(1, 4)])
