"""Tests of groundattn/supervision/reference.py: the authors' formulas (METHOD §6)."""

import pytest
import torch

from groundattn.supervision import direct_loss

from .batches import random_attention, random_grounding, seamless_layout
from .helpers import grounding_of, mask, uniform_attention
from .loop_reference import loop_reference_direct_loss

# Text tokens at 0, 1, 2 ([CLS], a word, [SEP]); r0 at 3, r1 at 4.
TEXT, REGIONS = mask(5, [0, 1, 2]), mask(5, [3, 4])
EPS = 1e-6


def _attn(rows: dict[int, list[float]], heads: int = 1) -> torch.Tensor:
    attn = uniform_attention(TEXT | REGIONS, H=heads)
    for i, row in rows.items():
        attn[0, 0, :, i] = torch.tensor(row)
    return attn


# Token 1 → r0 (position 3): r0 is a region column like any other in the released code.
ROWS = {1: [0.2, 0.2, 0.2, 0.3, 0.1], 3: [0.1, 0.4, 0.1, 0.2, 0.2]}
GROUNDING = grounding_of(5, [(1, 3)])


def _reference(attn, grounding=GROUNDING, text=TEXT, regions=REGIONS, normalization="linear"):
    return direct_loss(
        attn, grounding, text, regions, variant="reference", normalization=normalization
    )


def test_linear_by_hand():
    # txt2img: −log(ε + .3 / (.3 + .1 + ε)) = −log(0.7499991) = 0.2876832
    # img2txt: row 3 over text [.1, .4, .1], sum .6: x = log(ε + a / (.6 + ε))
    #   = [−1.7917551, −0.4054653, −1.7917551]; multi-hot y = [0, 1, 0]
    #   BCE-with-logits = softplus(x) − y·x: log(1 + 1/6) + log(1 + 3/2) + log(1 + 1/6)
    #   = 0.1541507 + 0.9162907 + 0.1541507 = 1.2245920 (+ ε terms) = 1.2245934
    #   ÷ 3 text tokens ([CLS] and [SEP] included) ÷ (1 region × L × H) = 0.4081978
    loss = _reference(_attn(ROWS))
    assert loss.txt2img.item() == pytest.approx(0.2876832, abs=1e-6)
    assert loss.img2txt.item() == pytest.approx(0.4081978, abs=1e-6)


def test_softmax_by_hand():
    # The log_softmax is applied to the probabilities themselves.
    # txt2img: −log_softmax([.3, .1])[0] = log(1 + e^(−.2)) = 0.5981389
    # img2txt: lse = log(2e^.1 + e^.4) = 1.3089182; x = [−1.2089182, −0.9089182, −1.2089182]
    #   softplus(−1.2089182) · 2 + softplus(0.9089182) = 0.2612252 · 2 + 1.2475024 = 1.7699528
    #   ÷ 3 text tokens = 0.5899843
    loss = _reference(_attn(ROWS), normalization="softmax")
    assert loss.txt2img.item() == pytest.approx(0.5981389, abs=1e-6)
    assert loss.img2txt.item() == pytest.approx(0.5899843, abs=1e-6)


def test_linear_epsilon_bounds_a_zero_attention():
    # No attention on the grounded region: −log(ε + 0) = 13.8155106 (the "13.8" of defect 1).
    loss = _reference(_attn({1: [0.2, 0.2, 0.2, 0.0, 0.4], 3: ROWS[3]}))
    assert loss.txt2img.item() == pytest.approx(13.8155106, rel=1e-6)


def test_image_to_text_denominators():
    # Two samples, 2 identical heads. a: 3 text tokens (row as in test_linear_by_hand),
    # b: 4 text tokens, region row [.1, .4, .1, 0, ...]: the 4th text column adds
    # softplus(log ε) = ε to the sum. Per sample: Σ over (L, H, text columns) ÷ T_b, then
    # summed over samples and ÷ (2 grounded regions × L × H = 2 · 2):
    #   (2 · 1.2245934 / 3 + 2 · 1.2245944 / 4) / 4 = (0.8163956 + 0.6122972) / 4 = 0.3571732
    text = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0]]).bool()
    regions = torch.tensor([[0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 0]]).bool()
    attn = uniform_attention(text | regions, H=2)
    attn[0, 0, :, 3, :5] = torch.tensor([0.1, 0.4, 0.1, 0.2, 0.2])
    attn[1, 0, :, 4, :6] = torch.tensor([0.1, 0.4, 0.1, 0.0, 0.2, 0.2])
    grounding = torch.zeros(2, 7, 7, dtype=torch.bool)
    grounding[0, 1, 3] = grounding[1, 1, 4] = True
    loss = _reference(attn, grounding, text, regions)
    assert loss.img2txt.item() == pytest.approx(0.3571732, abs=1e-6)


@pytest.mark.parametrize("normalization", ["linear", "softmax"])
def test_vectorised_equals_per_sample_loop(normalization):
    g = torch.Generator().manual_seed(5)
    layout = seamless_layout([5, 9, 7, 4], [4, 3, 6, 2], pad=2)
    grounding, _ = random_grounding(layout, phrases=3, max_boxes=1, generator=g)
    attn = random_attention(layout.valid_mask, 2, 3)
    masks = (grounding, layout.text_mask, layout.region_mask)
    ours = _reference(attn, *masks, normalization=normalization)
    loop = loop_reference_direct_loss(attn, *masks, normalization=normalization)
    torch.testing.assert_close(torch.stack(ours[:2]), torch.stack(loop))


@pytest.mark.parametrize("normalization", ["linear", "softmax"])
def test_gradients_reach_the_attention(normalization):
    attn = _attn(ROWS, heads=2).requires_grad_()
    _reference(attn, normalization=normalization).total.backward()
    assert torch.isfinite(attn.grad).all()
    assert (attn.grad[0, 0, :, [1, 3]].abs().sum(-1) > 0).all()
