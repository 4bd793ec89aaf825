"""The shared region scoring: top-k hits and their chance level, by hand."""

import math

import torch

from groundattn.tasks.regions import chance_hits, chance_top_k, top_k_hits, top_region_hits

# Positions 0-1 text, then regions (r0 at 2); the last sample has no candidate.
SCORES = torch.tensor(
    [
        [0.0, 0.0, 9.0, 1.0, 3.0, 2.0, 0.0],  # ranks: 4, 5, 3, 6
        [0.0, 0.0, 0.0, 5.0, 1.0, 4.0, 2.0],  # ranks: 3, 5, 6, 4
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    ]
)
CANDIDATES = torch.tensor(
    [[0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0]], dtype=torch.bool
)
TARGETS = torch.tensor(
    [[0, 0, 1, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0]], dtype=torch.bool
)


def test_top_k_hits_by_hand():
    # Sample 0: its positive is ranked first (r0 scores highest but is no candidate).
    # Sample 1: its positive is ranked last of 4. Sample 2: nothing to pick.
    assert top_k_hits(SCORES, TARGETS, CANDIDATES, 1).tolist() == [True, False, False]
    assert top_k_hits(SCORES, TARGETS, CANDIDATES, 3).tolist() == [True, False, False]
    assert top_k_hits(SCORES, TARGETS, CANDIDATES, 4).tolist() == [True, True, False]
    # k beyond the candidates (and the sequence): every candidate is picked.
    assert top_k_hits(SCORES, TARGETS, CANDIDATES, 5).tolist() == [True, True, False]
    assert top_k_hits(SCORES, TARGETS, CANDIDATES, 50).tolist() == [True, True, False]
    assert torch.equal(top_region_hits(SCORES, TARGETS, CANDIDATES), torch.tensor([1, 0, 0]) > 0)


def test_padding_is_never_picked():
    # One candidate of a positive score, the rest padding that scores higher.
    scores = torch.tensor([[5.0, -1.0, 7.0, 7.0]])
    candidates = torch.tensor([[False, True, False, False]])
    targets = torch.tensor([[True, False, True, True]])
    assert top_k_hits(scores, targets, candidates, 3).tolist() == [False]


def test_chance_of_k_uniform_picks_by_hand():
    # 1 positive of 4 candidates: k/4. Without candidates: 0.
    for k, expected in ((1, 1 / 4), (2, 2 / 4), (3, 3 / 4), (4, 1.0), (5, 1.0)):
        got = chance_top_k(TARGETS, CANDIDATES, k)
        torch.testing.assert_close(
            got, torch.tensor([expected, expected, 0.0], dtype=torch.float64)
        )
    # 2 positives of 7: 1 - C(5, 5) / C(7, 5) = 1 - 1/21; of 1 pick 2/7.
    targets = torch.tensor([[True, True, False, False, False, False, False]])
    candidates = torch.ones(1, 7, dtype=torch.bool)
    torch.testing.assert_close(
        chance_top_k(targets, candidates, 5),
        torch.tensor([1 - math.comb(5, 5) / math.comb(7, 5)], dtype=torch.float64),
    )
    torch.testing.assert_close(chance_hits(targets, candidates), torch.tensor([2 / 7]).double())
    # No positive among the candidates: never.
    assert chance_top_k(torch.zeros_like(candidates), candidates, 5).item() == 0.0
