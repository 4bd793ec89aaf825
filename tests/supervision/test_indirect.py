"""Tests of groundattn/supervision/indirect.py: indirect supervision (Eq. 5)."""

import pytest
import torch
from torch import nn

from groundattn.supervision import IndirectGroundingClassifier, indirect_loss

from .batches import random_grounding, seamless_layout
from .loop_reference import loop_indirect_loss


class DotClassifier(nn.Module):
    """d([e, x]) = e · x, to compute the loss by hand."""

    def forward(self, phrase, region):
        return (phrase * region).sum(-1)


# [CLS] w1 w2 w3 [SEP] r0 r1 r2: phrase A = w1 w2 → r1 (position 6), phrase B = w3 → r2 (7).
HIDDEN = torch.tensor(
    [
        [
            [5.0, 5.0],
            [1.0, 0.0],
            [0.0, 2.0],
            [-1.0, 1.0],
            [7.0, 7.0],
            [100.0, 100.0],
            [1.0, 0.0],
            [0.0, -1.0],
        ]
    ]
)
PHRASES = torch.tensor([[[0, 1, 1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0, 0]]]).bool()
PHRASE_REGIONS = torch.tensor([[[0, 0, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 0, 1]]]).bool()
CANDIDATES = torch.tensor([[0, 0, 0, 0, 0, 0, 1, 1]]).bool()  # r1, r2; not r0


def test_indirect_loss_by_hand():
    # A: e = max([1, 0], [0, 2]) = [1, 2]; logits r1: 1, r2: −2; targets (1, 0)
    #   BCE = softplus(−1) + softplus(−2) = 0.3132617 + 0.1269280; ÷ n_r = 2 → 0.2200948
    # B: e = [−1, 1]; logits r1: −1, r2: −1; targets (0, 1)
    #   BCE = softplus(−1) + softplus(1) = 0.3132617 + 1.3132617; ÷ 2 → 0.8132617
    # mean over the two phrases = 0.5166783 ([CLS], [SEP] and r0 are never read)
    loss = indirect_loss(HIDDEN, PHRASES, PHRASE_REGIONS, CANDIDATES, DotClassifier())
    assert loss.txt2img.item() == pytest.approx(0.5166783, abs=1e-6)
    assert loss.img2txt.item() == 0.0
    assert (int(loss.txt2img_rows), int(loss.img2txt_rows)) == (2, 0)  # a mean over 2 phrases


def test_only_the_phrase_tokens_are_pooled():
    # Defect 2: the token right after a phrase must not enter its embedding.
    hidden = torch.randn(1, 8, 16)
    only_a = PHRASES[:, :1]
    classifier = IndirectGroundingClassifier(16)
    args = (only_a, PHRASE_REGIONS[:, :1], CANDIDATES, classifier)
    before = indirect_loss(hidden, *args).txt2img
    after_phrase = hidden.clone()
    after_phrase[0, 3] += 10.0  # w3, just after "w1 w2"
    assert indirect_loss(after_phrase, *args).txt2img.item() == before.item()
    in_phrase = hidden.clone()
    in_phrase[0, 2] += 10.0  # w2, inside the phrase
    assert indirect_loss(in_phrase, *args).txt2img.item() != pytest.approx(before.item())


def test_no_phrase_gives_zero_and_finite_gradients():
    hidden = torch.randn(2, 8, 16, requires_grad=True)
    classifier = IndirectGroundingClassifier(16)
    none = torch.zeros(2, 3, 8, dtype=torch.bool)
    loss = indirect_loss(hidden, none, none, CANDIDATES.expand(2, 8), classifier).total
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(hidden.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in classifier.parameters())


def test_gradients_reach_hidden_states_and_classifier():
    hidden = torch.randn(1, 8, 16, requires_grad=True)
    classifier = IndirectGroundingClassifier(16)
    indirect_loss(hidden, PHRASES, PHRASE_REGIONS, CANDIDATES, classifier).total.backward()
    assert hidden.grad[0, [1, 2, 3, 6, 7]].abs().sum(-1).gt(0).all()  # phrase tokens, regions
    assert hidden.grad[0, [0, 4, 5]].abs().sum() == 0  # [CLS], [SEP], r0
    assert all(p.grad.abs().sum() > 0 for p in classifier.parameters())


def test_classifier_is_one_mlp_on_the_concatenation():
    classifier = IndirectGroundingClassifier(8)
    e, x = torch.randn(5, 8), torch.randn(5, 8)
    first = torch.cat([classifier.phrase_proj.weight, classifier.region_proj.weight], dim=1)
    hidden = torch.cat([e, x], -1) @ first.T + classifier.phrase_proj.bias  # Linear(2D → D)
    expected = classifier.out(nn.functional.gelu(hidden)).squeeze(-1)
    torch.testing.assert_close(classifier(e, x), expected)
    # Broadcasting scores every (phrase, region) pair.
    assert classifier(e[:, None], x[None]).shape == (5, 5)


def test_vectorised_equals_per_phrase_loop():
    g = torch.Generator().manual_seed(11)
    layout = seamless_layout([6, 10, 8], [4, 3, 6], pad=2)
    grounding, phrase_mask = random_grounding(layout, phrases=3, max_boxes=2, generator=g)
    phrase_regions = (phrase_mask[..., None] & grounding[:, None]).any(2)  # (B, P, N)
    candidates = layout.region_mask & (layout.region_mask.cumsum(-1) > 1)  # not r0
    hidden = torch.randn(3, phrase_mask.shape[-1], 16)
    classifier = IndirectGroundingClassifier(16)
    args = (phrase_mask, phrase_regions, candidates, classifier)
    torch.testing.assert_close(
        indirect_loss(hidden, *args).txt2img, loop_indirect_loss(hidden, *args)
    )
