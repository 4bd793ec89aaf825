import pytest
import torch

from groundattn.config import SupervisionSection
from groundattn.model import VLEncoder, preset
from groundattn.model.inputs import pack
from groundattn.supervision import direct_loss, supervised_rows
from groundattn.tasks.vgp import (
    VGPBatch,
    VGPTask,
    build_supervision,
    most_grounded_heads,
    summarize,
)
from groundattn.tasks.vgp.supervision import Direct


def _batch(config) -> VGPBatch:
    g = torch.Generator().manual_seed(0)
    inputs = pack(
        [[101, 5, 6, 102, 7, 102], [101, 8, 9, 10, 102, 11, 12, 102]],
        [[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1, 1, 1]],
        [
            torch.randn(4, config.visual_feature_dim, generator=g),
            torch.randn(3, config.visual_feature_dim, generator=g),
        ],
        [torch.rand(4, 4, generator=g), torch.rand(3, 4, generator=g)],
    )
    B, N = inputs.input_ids.shape
    grounding = torch.zeros(B, N, N, dtype=torch.bool)
    grounding[0, 1, 6 + 1] = grounding[0, 2, 6 + 1] = grounding[0, 4, 6 + 3] = (
        True  # regions follow 6 text tokens
    )
    grounding[1, 5, 8 + 2] = True
    phrase_mask = torch.zeros(B, 2, N, dtype=torch.bool)
    phrase_mask[0, 0, 1:3] = phrase_mask[0, 1, 4] = phrase_mask[1, 0, 5] = phrase_mask[
        1, 1, 1:4
    ] = True
    phrase_regions = torch.zeros(B, 2, N, dtype=torch.bool)
    phrase_regions[0, 0, 7] = phrase_regions[0, 1, 9] = phrase_regions[1, 0, 10] = True
    pairs = torch.tensor([[[0, 1, 3]], [[1, 0, 1]]])
    return VGPBatch(inputs, grounding, phrase_mask, phrase_regions, pairs, torch.tensor([0, 2]))


@pytest.mark.parametrize("method", ["none", "indirect", "direct", "semi-direct"])
def test_every_loss_part_is_reported_and_trains(method):
    config = preset("tiny")
    supervision = build_supervision(SupervisionSection(method=method), config.hidden_size)
    task = VGPTask(VLEncoder(config), supervision)
    loss, parts = task(_batch(config)).loss()
    loss.backward()
    assert {"loss_id", "loss_vgp", "loss_att_txt2img", "loss_att_img2txt"} <= set(parts)
    assert (parts["loss_att_txt2img"] > 0) == (method != "none")
    assert task.encoder.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


def test_head_selection_supervises_only_those_heads():
    config = preset("tiny")
    encoder = VLEncoder(config).eval()
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[1, 2] = mask[0, 0] = True
    task = VGPTask(encoder, Direct(), head_mask=mask).eval()
    batch = _batch(config)
    _, parts = task(batch).loss()
    probs = encoder(batch.inputs, output_attentions=True).attention.probs  # (B, L, H, N, N)
    expected = direct_loss(
        probs[:, mask][:, None], batch.grounding, batch.inputs.text_mask, batch.inputs.region_mask
    )
    attention = parts["loss_att_txt2img"] + parts["loss_att_img2txt"]
    torch.testing.assert_close(attention, expected.total, atol=1e-5, rtol=1e-5)
    # The cheap path read the rows direct supervision needs.
    rows, _ = supervised_rows(batch.grounding)
    assert rows.shape[1] == 5  # sample 0: tokens 1, 2, 4 and regions 7, 9


def test_summarize_by_hand():
    confusion = torch.zeros(5, 5, dtype=torch.long)
    confusion[0, 0], confusion[0, 1], confusion[1, 1], confusion[3, 3] = 2, 1, 1, 1
    counts = {
        "id_correct": torch.tensor(3),
        "id_total": torch.tensor(4),
        "vgp_confusion": confusion,
        "grounding_hits": torch.tensor([[1, 3], [2, 0]]),
        "grounding_total": torch.tensor(4),
        "rollout_hits": torch.tensor([2, 4]),
        "id_by_class": torch.tensor([2, 1, 1]),
        "grounding_chance": torch.tensor(1.5, dtype=torch.float64),
        "phrase_hits": torch.tensor([[1, 0], [2, 1]]),
        "phrase_total": torch.tensor(2),
        "phrase_chance": torch.tensor(0.5, dtype=torch.float64),
        "region_spread": torch.tensor([1.5, 0.75, 0.3], dtype=torch.float64),
        "region_spread_samples": torch.tensor(3),
        "text_spread": torch.tensor([6.0, 4.5, 3.0], dtype=torch.float64),
        "text_spread_samples": torch.tensor(3),
    }
    m = summarize(counts)
    assert m["id_accuracy"] == 0.75 and m["vgp_accuracy"] == 0.8
    # Majority classes: id class 0 (2 of 4), VGP class 0 (3 of 5); chance 1.5 of 4 tokens.
    assert m["id_accuracy_baseline"] == 0.5 and m["vgp_accuracy_baseline"] == 0.6
    assert m["grounding_baseline"] == 0.375
    # F1: class 0: p=1, r=2/3 → 0.8; class 1: p=1/2, r=1 → 2/3; class 3: 1. Macro over present classes.
    assert m["vgp_macro_f1"] == pytest.approx((0.8 + 2 / 3 + 1) / 3)
    assert m["grounding_best"] == 0.75 and (
        m["grounding_best_layer"],
        m["grounding_best_head"],
    ) == (0, 1)
    assert m["grounding_mean"] == pytest.approx(6 / 16) and m["rollout_best"] == 1.0
    # Heads of accuracy >= 0.5: (0, 1) and (1, 0). The best head (0, 1) recalls no phrase of 2.
    assert m["grounded_heads"] == 2
    assert m["phrase_recall_at_1_best_head"] == 0.0 and m["phrase_recall_at_1_baseline"] == 0.25
    assert m["phrase_recall_at_1_per_head"] == [0.5, 0.0, 1.0, 0.5]
    assert m["region_spread_per_layer"] == pytest.approx([0.5, 0.25, 0.1])  # sums / 3 samples
    assert m["text_spread_per_layer"] == pytest.approx([2.0, 1.5, 1.0])


def test_most_grounded_heads():
    acc = torch.tensor([[0.1, 0.9], [0.5, 0.3]])
    assert most_grounded_heads(acc, 2).tolist() == [[False, True], [True, False]]
