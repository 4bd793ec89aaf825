"""Tests of groundattn/supervision/direct.py: the paper variant and the logits path."""

import math

import pytest
import torch

from groundattn.supervision import direct_loss, direct_loss_from_logits, supervised_rows

from .batches import random_attention, random_grounding, seamless_layout
from .helpers import (
    gather_row_logits,
    grounding_of,
    mask,
    masked_softmax,
    pad_sample,
    uniform_attention,
)
from .loop_reference import loop_direct_loss

# Hand cases: text tokens at 0, 1, 2; regions at 3 (r0) and 4; no padding.
TEXT, REGIONS = mask(5, [0, 1, 2]), mask(5, [3, 4])
VALID = TEXT | REGIONS


def _attn(rows: dict[int, list[float]], heads: int = 1) -> torch.Tensor:
    """(1, 1, heads, 5, 5): uniform rows, except the given rows (same in every head)."""
    attn = uniform_attention(VALID, H=heads)
    for i, row in rows.items():
        attn[0, 0, :, i] = torch.tensor(row)
    return attn


def test_single_pair_by_hand_averaged_over_heads():
    # Token 1 → region 4.
    # head 0, row 1 = [.2, .2, .2, .1, .3]: â = .3 / (.1 + .3) = .75 → −log .75 = 0.287682
    # head 1, row 1 = [.1, .1, .1, .35, .35]: â = .35 / .7 = .5 → −log .5 = 0.693147
    # txt2img = mean over heads = 0.490415
    # row 4 (both heads) = [.1, .4, .1, .2, .2]: ã = .4 / .6 → −log(2/3) = 0.405465
    attn = _attn({1: [0.2, 0.2, 0.2, 0.1, 0.3], 4: [0.1, 0.4, 0.1, 0.2, 0.2]}, heads=2)
    attn[0, 0, 1, 1] = torch.tensor([0.1, 0.1, 0.1, 0.35, 0.35])
    loss = direct_loss(attn, grounding_of(5, [(1, 4)]), TEXT, REGIONS)
    assert loss.txt2img.item() == pytest.approx((0.287682 + 0.693147) / 2, abs=1e-5)
    assert loss.img2txt.item() == pytest.approx(0.405465, abs=1e-5)
    assert loss.total.item() == pytest.approx(0.490415 + 0.405465, abs=1e-5)


def test_phrase_of_two_tokens_by_hand():
    # Tokens 1 and 2 → region 4.
    # txt2img: row 1 [.2, .2, .2, .1, .3] → .75; row 2 [.1, .1, .1, .35, .35] → .5
    #   mean(−log .75, −log .5) = (0.287682 + 0.693147) / 2 = 0.490415
    # img2txt: row 4 [.1, .3, .2, .2, .2], text mass .6: ã1 = .5, ã2 = 1/3;
    #   target uniform over {1, 2}: −(log .5 + log(1/3)) / 2 = log(6) / 2 = 0.895880
    attn = _attn(
        {1: [0.2, 0.2, 0.2, 0.1, 0.3], 2: [0.1, 0.1, 0.1, 0.35, 0.35], 4: [0.1, 0.3, 0.2, 0.2, 0.2]}
    )
    loss = direct_loss(attn, grounding_of(5, [(1, 4), (2, 4)]), TEXT, REGIONS)
    assert loss.txt2img.item() == pytest.approx(0.490415, abs=1e-5)
    assert loss.img2txt.item() == pytest.approx(math.log(6) / 2, abs=1e-5)


def test_multi_box_entity_targets_uniform_over_its_regions():
    # Token 1 → regions 3 and 4.
    # txt2img: row 1 [.2, .2, .2, .3, .1]: â = (.75, .25); −(log .75 + log .25) / 2 = 0.836988
    # img2txt: row 3 [.1, .4, .1, .2, .2]: ã1 = 2/3 → 0.405465;
    #          row 4 [.2, .3, .3, .1, .1]: ã1 = .3/.8 = .375 → 0.980829; mean = 0.693147
    attn = _attn(
        {1: [0.2, 0.2, 0.2, 0.3, 0.1], 3: [0.1, 0.4, 0.1, 0.2, 0.2], 4: [0.2, 0.3, 0.3, 0.1, 0.1]}
    )
    loss = direct_loss(attn, grounding_of(5, [(1, 3), (1, 4)]), TEXT, REGIONS)
    assert loss.txt2img.item() == pytest.approx(0.836988, abs=1e-5)
    assert loss.img2txt.item() == pytest.approx(math.log(2), abs=1e-5)
    with pytest.raises(ValueError, match="one region per grounded text token"):
        direct_loss(attn, grounding_of(5, [(1, 3), (1, 4)]), TEXT, REGIONS, variant="reference")


@pytest.mark.parametrize(
    ("kwargs", "accepted"),
    [
        ({"variant": "papr"}, "'paper', 'reference'"),
        ({"normalization": "log"}, "'linear', 'softmax'"),
    ],
)
def test_unknown_option_raises_with_accepted_values(kwargs, accepted):
    with pytest.raises(ValueError, match=accepted):
        direct_loss(_attn({}), grounding_of(5, [(1, 4)]), TEXT, REGIONS, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"variant": "reference", "normalization": "linear"},
        {"variant": "reference", "normalization": "softmax"},
    ],
)
def test_no_grounding_gives_zero_and_finite_gradient(kwargs):
    attn = _attn({}).requires_grad_()
    loss = direct_loss(attn, grounding_of(5, []), TEXT, REGIONS, **kwargs)
    assert loss.txt2img.item() == 0.0 and loss.img2txt.item() == 0.0
    loss.total.backward()
    assert torch.isfinite(attn.grad).all()


def test_no_grounding_from_logits_gives_zero_and_finite_gradient():
    g = grounding_of(5, [])
    rows, row_mask = supervised_rows(g)
    logits = torch.randn(1, 2, 2, 5, 5, requires_grad=True)
    loss = direct_loss_from_logits(
        gather_row_logits(logits, rows), rows, row_mask, g, TEXT, REGIONS
    )
    assert loss.total.item() == 0.0
    loss.total.backward()
    assert torch.isfinite(logits.grad).all()


def test_gradients_reach_the_supervised_rows_only():
    attn = uniform_attention(VALID, L=2, H=3).requires_grad_()
    direct_loss(attn, grounding_of(5, [(1, 4)]), TEXT, REGIONS).total.backward()
    grad = attn.grad[0]  # (L, H, N, N)
    assert torch.isfinite(grad).all()
    assert (grad[:, :, [1, 4]].abs().sum(-1) > 0).all()  # every layer and head, both rows
    assert grad[:, :, [0, 2, 3]].abs().sum() == 0


def test_one_hot_attention_gives_zero_loss_and_finite_gradient():
    # Exact zeros on valid region columns must neither give NaN nor a wrong value.
    attn = _attn({1: [0.0, 0.0, 0.0, 0.0, 1.0]}).requires_grad_()
    loss = direct_loss(attn, grounding_of(5, [(1, 4)]), TEXT, REGIONS)
    assert loss.txt2img.item() == pytest.approx(0.0, abs=1e-6)
    loss.total.backward()
    assert torch.isfinite(attn.grad).all()


def _seamless(order=(0, 1), perfect=(True, True)):
    """Sample a: 3 text + 3 regions + [END]; sample b: 6 text + 2 regions + [END]; N = 9.

    a: token 1 → region 5; b: tokens 2, 3 → region 7. A perfect sample's grounded text
    rows put all their attention on their region; every other row is uniform.
    """
    text, regions, pairs = [3, 6], [3, 2], [[(1, 5)], [(2, 7), (3, 7)]]
    text, regions = [text[i] for i in order], [regions[i] for i in order]
    layout = seamless_layout(text, regions)
    attn = uniform_attention(layout.valid_mask, L=2, H=2)
    grounding = torch.zeros(2, 9, 9, dtype=torch.bool)
    for b, sample in enumerate(order):
        for i, j in pairs[sample]:
            grounding[b, i, j] = True
            if perfect[sample]:
                attn[b, :, :, i] = 0.0
                attn[b, :, :, i, j] = 1.0
    return attn, grounding, layout


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_perfectly_grounded_samples_get_zero_wherever_they_sit(order, variant):
    # Defect 1: the shorter sample's regions follow its own text, not the longest's.
    attn, grounding, layout = _seamless(order)
    loss = direct_loss(attn, grounding, layout.text_mask, layout.region_mask, variant=variant)
    assert loss.txt2img.item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_perfect_shorter_sample_adds_nothing_to_the_batch_loss(variant):
    # a perfect (1 grounded token, loss 0), b uniform (2 tokens): batch = 2/3 · loss(b alone).
    attn, grounding, layout = _seamless(perfect=(True, False))
    batch = direct_loss(attn, grounding, layout.text_mask, layout.region_mask, variant=variant)
    alone = direct_loss(
        attn[1:], grounding[1:], layout.text_mask[1:], layout.region_mask[1:], variant=variant
    )
    assert alone.txt2img.item() > 0.5
    assert batch.txt2img.item() == pytest.approx(2 / 3 * alone.txt2img.item(), rel=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"variant": "reference", "normalization": "linear"},
        {"variant": "reference", "normalization": "softmax"},
    ],
)
def test_padding_a_sample_does_not_change_its_loss(kwargs):
    layout = seamless_layout([4], [3])
    attn = random_attention(layout.valid_mask, 2, 2)
    grounding = grounding_of(8, [(1, 5), (2, 6)])
    masks = [layout.text_mask, layout.region_mask]
    padded, g, (text, regions) = pad_sample(attn, grounding, masks, extra=3)
    before = direct_loss(attn, grounding, *masks, **kwargs)
    after = direct_loss(padded, g, text, regions, **kwargs)
    torch.testing.assert_close(torch.stack(after), torch.stack(before))


def _random_batch(max_boxes=2, pad=2, L=2, H=3):
    g = torch.Generator().manual_seed(3)
    layout = seamless_layout([5, 9, 7, 4], [4, 3, 6, 2], pad=pad)
    grounding, _ = random_grounding(layout, phrases=3, max_boxes=max_boxes, generator=g)
    return layout, grounding, L, H


def test_vectorised_equals_per_sample_loop():
    layout, grounding, L, H = _random_batch()
    attn = random_attention(layout.valid_mask, L, H)
    ours = direct_loss(attn, grounding, layout.text_mask, layout.region_mask)
    loop = loop_direct_loss(attn, grounding, layout.text_mask, layout.region_mask)
    torch.testing.assert_close(torch.stack(ours[:2]), torch.stack(loop))


def test_from_logits_equals_probabilities_path_with_its_gradient():
    layout, grounding, L, H = _random_batch()
    logits = torch.randn(4, L, H, *grounding.shape[1:], requires_grad=True)
    masks = (grounding, layout.text_mask, layout.region_mask)
    probs = masked_softmax(logits, layout.valid_mask)
    expected = direct_loss(probs, *masks)
    (grad_expected,) = torch.autograd.grad(expected.total, logits)

    rows, row_mask = supervised_rows(grounding)
    # Padding columns of the rows hold the raw random logits: any finite value must do.
    row_logits = gather_row_logits(logits, rows)
    ours = direct_loss_from_logits(row_logits, rows, row_mask, *masks)
    (grad_ours,) = torch.autograd.grad(ours.total, logits)

    torch.testing.assert_close(torch.stack(ours), torch.stack(expected), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad_ours, grad_expected, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("fill", [1e4, -1e4, float("-inf")])
def test_from_logits_ignores_padding_columns(fill):
    layout, grounding, L, H = _random_batch()
    rows, row_mask = supervised_rows(grounding)
    row_logits = torch.randn(4, L, H, rows.shape[1], grounding.shape[-1])
    args = (rows, row_mask, grounding, layout.text_mask, layout.region_mask)
    valid = layout.valid_mask[:, None, None, None]  # (B, 1, 1, 1, N)
    garbage = torch.where(valid, row_logits, fill).requires_grad_()
    loss = direct_loss_from_logits(garbage, *args)
    torch.testing.assert_close(
        torch.stack(loss), torch.stack(direct_loss_from_logits(row_logits, *args))
    )
    loss.total.backward()
    assert torch.isfinite(garbage.grad).all()


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_half_precision_attention_is_supervised_in_float32(variant):
    layout, grounding, L, H = _random_batch(max_boxes=1)
    attn = random_attention(layout.valid_mask, L, H)
    masks = (grounding, layout.text_mask, layout.region_mask)
    half = direct_loss(attn.half(), *masks, variant=variant)
    assert half.txt2img.dtype == torch.float32
    full = direct_loss(attn, *masks, variant=variant)
    torch.testing.assert_close(torch.stack(half), torch.stack(full), atol=2e-3, rtol=2e-3)
