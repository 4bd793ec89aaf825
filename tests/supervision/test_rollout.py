"""Tests of groundattn/supervision/rollout.py: attention rollout and semi-direct supervision."""

import pytest
import torch

from groundattn.supervision import direct_loss, rollout, semi_direct_loss

from .batches import random_attention, random_grounding, seamless_layout
from .helpers import grounding_of, mask
from .loop_reference import loop_semi_direct_loss

# Two layers, two heads, three tokens.
HEAD_A = [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
HEAD_B = [[0, 0.5, 0.5], [0.5, 0.5, 0], [1, 0, 0]]
TO_LAST = [[0, 0, 1], [0, 0, 1], [0, 0, 1]]  # layer 2, both heads: everyone attends token 2
ATTN = torch.tensor([[HEAD_A, HEAD_B], [TO_LAST, TO_LAST]])[None]  # (1, 2, 2, 3, 3)
VALID = mask(3, [0, 1, 2])


def test_rollout_by_hand():
    # Layer 1: mean_h A = [[0, .75, .25], [.75, .25, 0], [.5, 0, .5]]; + I, rows sum to 2:
    #   Â1 = [[.5, .375, .125], [.375, .625, 0], [.25, 0, .75]] = R1
    # Layer 2: Â2 = (A2 + I) / 2 = [[.5, 0, .5], [0, .5, .5], [0, 0, 1]]
    #   R2 = Â2 · R1: row 0 = .5 R1[0] + .5 R1[2] = [.375, .1875, .4375]
    #                 row 1 = .5 R1[1] + .5 R1[2] = [.3125, .3125, .375]
    #                 row 2 = R1[2]               = [.25, 0, .75]
    expected = torch.tensor(
        [
            [[0.5, 0.375, 0.125], [0.375, 0.625, 0.0], [0.25, 0.0, 0.75]],
            [[0.375, 0.1875, 0.4375], [0.3125, 0.3125, 0.375], [0.25, 0.0, 0.75]],
        ]
    )[None]
    torch.testing.assert_close(rollout(ATTN, VALID), expected)


def test_per_head_rollout_by_hand():
    # Head A: R1 = (A + I) / 2 = [[.5, .5, 0], [.5, .5, 0], [0, 0, 1]]
    #   R2 = Â2 · R1 = [[.25, .25, .5], [.25, .25, .5], [0, 0, 1]]
    # Head B: R1 = (B + I) / 2 = [[.5, .25, .25], [.25, .75, 0], [.5, 0, .5]]
    #   R2 = Â2 · R1 = [[.5, .125, .375], [.375, .375, .25], [.5, 0, .5]]
    rolled = rollout(ATTN, VALID, per_head=True)
    assert rolled.shape == (1, 2, 2, 3, 3)
    torch.testing.assert_close(
        rolled[0, 1, 0], torch.tensor([[0.25, 0.25, 0.5], [0.25, 0.25, 0.5], [0.0, 0.0, 1.0]])
    )
    torch.testing.assert_close(
        rolled[0, 1, 1], torch.tensor([[0.5, 0.125, 0.375], [0.375, 0.375, 0.25], [0.5, 0.0, 0.5]])
    )


@pytest.mark.parametrize("per_head", [False, True])
def test_padding_does_not_leak(per_head):
    padded = torch.rand(1, 2, 2, 5, 5)  # garbage in padding rows and columns 3, 4
    padded[..., :3, :3] = ATTN
    rolled = rollout(padded, mask(5, [0, 1, 2]), per_head=per_head)
    torch.testing.assert_close(rolled[..., :3, :3], rollout(ATTN, VALID, per_head=per_head))
    assert rolled[..., 3:, :].abs().sum() == 0 and rolled[..., :, 3:].abs().sum() == 0


def test_valid_rows_are_distributions():
    layout = seamless_layout([4, 7], [3, 2], pad=1)
    rolled = rollout(random_attention(layout.valid_mask, 3, 2), layout.valid_mask)
    sums = rolled.sum(-1)  # (B, L, N)
    torch.testing.assert_close(sums, layout.valid_mask[:, None].float().expand_as(sums))


# Semi-direct hand case on ATTN: token 0 is the text, tokens 1 and 2 regions; 0 → 1.
TEXT, REGIONS = mask(3, [0]), mask(3, [1, 2])
GROUNDING = grounding_of(3, [(0, 1)])


def test_semi_direct_by_hand():
    # Row 0 of R1 = [.5, .375, .125]: â1 = .375 / .5 = .75 → 0.2876821
    # Row 0 of R2 = [.375, .1875, .4375]: â1 = .1875 / .625 = .3 → 1.2039728
    # mean over the two layers = 0.7458274. img2txt: one text column → ã = 1 → 0.
    loss = semi_direct_loss(ATTN, GROUNDING, TEXT, REGIONS, VALID)
    assert loss.txt2img.item() == pytest.approx(0.7458274, abs=1e-6)
    assert loss.img2txt.item() == pytest.approx(0.0, abs=1e-6)


def test_per_head_semi_direct_by_hand():
    # Head A: R1 row 0 [.5, .5, 0] → â1 = 1 → 0; R2 row 0 [.25, .25, .5] → 1/3 → 1.0986123
    # Head B: R1 row 0 [.5, .25, .25] → .5 → 0.6931472; R2 row 0 [.5, .125, .375] → .25 → 1.3862944
    # mean over (layer, head) = 3.1780539 / 4 = 0.7945135
    loss = semi_direct_loss(ATTN, GROUNDING, TEXT, REGIONS, VALID, per_head=True)
    assert loss.txt2img.item() == pytest.approx(0.7945135, abs=1e-6)


def test_semi_direct_is_direct_on_rollout():
    args = (GROUNDING, TEXT, REGIONS)
    for variant in ("paper", "reference"):
        semi = semi_direct_loss(ATTN, *args, VALID, variant=variant)
        direct = direct_loss(rollout(ATTN, VALID)[:, :, None], *args, variant=variant)
        torch.testing.assert_close(torch.stack(semi), torch.stack(direct))


@pytest.mark.parametrize("per_head", [False, True])
def test_semi_direct_equals_per_sample_loop(per_head):
    g = torch.Generator().manual_seed(7)
    layout = seamless_layout([5, 9, 7], [4, 3, 6], pad=2)
    grounding, _ = random_grounding(layout, phrases=3, max_boxes=2, generator=g)
    attn = random_attention(layout.valid_mask, 3, 2)
    masks = (grounding, layout.text_mask, layout.region_mask, layout.valid_mask)
    ours = semi_direct_loss(attn, *masks, per_head=per_head)
    loop = loop_semi_direct_loss(attn, *masks, per_head=per_head)
    torch.testing.assert_close(torch.stack(ours[:2]), torch.stack(loop))


@pytest.mark.parametrize("per_head", [False, True])
def test_semi_direct_without_grounding_is_zero_with_finite_gradient(per_head):
    layout = seamless_layout([4, 6], [3, 2], pad=1)
    attn = random_attention(layout.valid_mask, 2, 2).requires_grad_()
    empty = torch.zeros(2, 11, 11, dtype=torch.bool)
    loss = semi_direct_loss(
        attn, empty, layout.text_mask, layout.region_mask, layout.valid_mask, per_head=per_head
    )
    assert loss.total.item() == 0.0
    loss.total.backward()
    assert torch.isfinite(attn.grad).all()


def test_semi_direct_gradients_reach_the_attention():
    attn = ATTN.clone().requires_grad_()
    semi_direct_loss(attn, GROUNDING, TEXT, REGIONS, VALID).total.backward()
    assert torch.isfinite(attn.grad).all() and attn.grad.abs().sum() > 0


def test_semi_direct_unknown_variant_raises():
    with pytest.raises(ValueError, match="'paper', 'reference'"):
        semi_direct_loss(ATTN, GROUNDING, TEXT, REGIONS, VALID, variant="rollout")
