"""Tests of groundattn/supervision/accuracy.py: attention grounding accuracy (METHOD §8)."""

import torch

from groundattn.supervision import (
    grounding_accuracy,
    grounding_chance,
    grounding_hits,
    phrase_grounding_hits,
    rollout,
)

# Sample 0: text 0-2, regions 3-5; token 1 → 4, token 2 → 5.
# Sample 1: text 0-3, regions 4-5; token 2 → 5, token 3 → 4 and 5 (two boxes).
REGIONS = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1]]).bool()
GROUNDING = torch.zeros(2, 6, 6, dtype=torch.bool)
GROUNDING[0, 1, 4] = GROUNDING[0, 2, 5] = True
GROUNDING[1, 2, 5] = GROUNDING[1, 3, 4] = GROUNDING[1, 3, 5] = True


def _attn() -> torch.Tensor:
    attn = torch.full((2, 1, 2, 6, 6), 1 / 6)
    # head 0: hit (text column 0 is larger but is not a region), miss, miss, hit (box 2 of 2)
    attn[0, 0, 0, 1] = torch.tensor([0.5, 0.0, 0.0, 0.1, 0.3, 0.1])
    attn[0, 0, 0, 2] = torch.tensor([0.0, 0.0, 0.0, 0.4, 0.3, 0.3])
    attn[1, 0, 0, 2] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.6, 0.4])
    attn[1, 0, 0, 3] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.3, 0.7])
    # head 1: all four hit (token 3 of sample 1 on its other box)
    attn[0, 0, 1, 1] = torch.tensor([0.0, 0.0, 0.0, 0.1, 0.8, 0.1])
    attn[0, 0, 1, 2] = torch.tensor([0.0, 0.0, 0.0, 0.1, 0.1, 0.8])
    attn[1, 0, 1, 2] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.2, 0.8])
    attn[1, 0, 1, 3] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.8, 0.2])
    return attn


def test_hits_and_accuracy_by_hand():
    # 4 grounded tokens; head 0: 2 hits → .5; head 1: 4 hits → 1.
    hits, count = grounding_hits(_attn(), GROUNDING, REGIONS)
    assert hits.tolist() == [[2, 4]] and count.item() == 4
    torch.testing.assert_close(
        grounding_accuracy(_attn(), GROUNDING, REGIONS), torch.tensor([[0.5, 1.0]])
    )


def test_accepts_head_averaged_rollout():
    valid = torch.ones(2, 6, dtype=torch.bool)
    rolled = rollout(_attn(), valid)  # (B, L, N, N)
    accuracy = grounding_accuracy(rolled, GROUNDING, REGIONS)
    assert accuracy.shape == (1, 1)
    hits, count = grounding_hits(rolled[:, :, None], GROUNDING, REGIONS)
    torch.testing.assert_close(accuracy, hits.float() / count)


def test_no_grounded_token_gives_zero_counts():
    empty = torch.zeros(2, 6, 6, dtype=torch.bool)
    hits, count = grounding_hits(_attn(), empty, REGIONS)
    assert hits.tolist() == [[0, 0]] and count.item() == 0
    assert grounding_accuracy(_attn(), empty, REGIONS).tolist() == [[0.0, 0.0]]


def test_chance_by_hand():
    # Sample 0: 3 regions, two tokens with one box each: 1/3 + 1/3.
    # Sample 1: 2 regions, one token with one box, one with both: 1/2 + 2/2.
    expected = 2 / 3 + 1 / 2 + 1
    assert abs(grounding_chance(GROUNDING, REGIONS).item() - expected) < 1e-12


def test_chance_equals_the_accuracy_of_uniform_attention_averaged_over_tie_breaks():
    # Uniform attention over each sample's regions, one region made the arg-max at a
    # time: the hits averaged over these choices are the chance level.
    B, N = REGIONS.shape
    total = 0.0
    for b in range(B):
        slots = REGIONS[b].nonzero()[:, 0]
        for j in slots:
            attn = torch.zeros(1, 1, 1, N, N)
            attn[0, 0, 0, :, j] = 1.0
            hits, _ = grounding_hits(attn, GROUNDING[b : b + 1], REGIONS[b : b + 1])
            total += hits.item() / len(slots)
    assert abs(grounding_chance(GROUNDING, REGIONS).item() - total) < 1e-12


def test_phrase_grounding_hits_by_hand():
    # Text 0-2, regions 3-5 (r0 at 3). Phrase 0: tokens 1-2 → region 5; phrase 1: token 0 →
    # region 4; phrase 2: token 0 → r0 only (not counted); phrase 3: no token (padding).
    regions = torch.tensor([[0, 0, 0, 1, 1, 1]]).bool()
    phrase_mask = torch.zeros(1, 4, 6, dtype=torch.bool)
    phrase_mask[0, 0, 1:3] = phrase_mask[0, 1, 0] = phrase_mask[0, 2, 0] = True
    phrase_regions = torch.zeros(1, 4, 6, dtype=torch.bool)
    phrase_regions[0, 0, 5] = phrase_regions[0, 1, 4] = phrase_regions[0, 2, 3] = True
    phrase_regions[0, 3, 4] = True
    attn = torch.zeros(1, 1, 2, 6, 6)
    # Head 0: token 0 → 4 (r0 scores highest, never picked): phrase 1 hit; tokens 1 and 2
    # sum to .6 on 4 and .3 on 5: phrase 0 missed.
    attn[0, 0, 0, 0, 3:] = torch.tensor([0.9, 0.06, 0.04])
    attn[0, 0, 0, 1, 3:] = torch.tensor([0.0, 0.5, 0.1])
    attn[0, 0, 0, 2, 3:] = torch.tensor([0.0, 0.1, 0.2])
    # Head 1: token 0 → 5: phrase 1 missed; tokens 1 and 2: .3 on 4, .8 on 5: phrase 0 hit.
    attn[0, 0, 1, 0, 3:] = torch.tensor([0.1, 0.1, 0.8])
    attn[0, 0, 1, 1, 3:] = torch.tensor([0.0, 0.2, 0.3])
    attn[0, 0, 1, 2, 3:] = torch.tensor([0.0, 0.1, 0.5])
    hits, count, chance = phrase_grounding_hits(attn, phrase_mask, phrase_regions, regions)
    assert hits.tolist() == [[1, 1]] and count.item() == 2
    assert chance.item() == 1.0  # one region of two candidates, twice
