import pytest
import torch

from groundattn.config import SupervisionSection
from groundattn.model import VLEncoder, preset
from groundattn.supervision import direct_loss
from groundattn.tasks.vgp import METHODS, Needs, VGPTask, build_supervision
from groundattn.tasks.vgp.supervision import Direct, Indirect, NoSupervision, SemiDirect

from .test_task import _batch


def test_each_method_is_its_own_module_and_says_what_it_needs():
    built = {
        name: build_supervision(SupervisionSection(method=name, weight=0.3), 32) for name in METHODS
    }
    assert [type(m) for m in built.values()] == [NoSupervision, Indirect, Direct, SemiDirect]
    assert {name: m.needs for name, m in built.items()} == {
        "none": Needs.NOTHING,
        "indirect": Needs.FINAL_STATES,
        "direct": Needs.ROW_LOGITS,
        "semi-direct": Needs.PROBABILITIES,
    }
    assert all(m.weight == 0.3 for m in built.values())
    reference = SupervisionSection(method="direct", variant="reference")
    assert build_supervision(reference, 32).needs is Needs.PROBABILITIES
    # Only the indirect method holds weights: its (phrase, region) classifier.
    assert [name for name, m in built.items() if list(m.parameters())] == ["indirect"]


def test_losses_carry_the_counts_they_are_means_over():
    config = preset("tiny")
    encoder = VLEncoder(config).eval()
    batch = _batch(config)
    # The batch by hand: sample 0 grounds text tokens 1, 2 to region 7 and 4 to region 9,
    # sample 1 token 5 to region 10; phrases with a token and a region: 2 + 1.
    grounded_text, grounded_regions = 4, 3
    assert int(batch.grounding.any(-1).sum()) == grounded_text
    assert int(batch.grounding.any(-2).sum()) == grounded_regions
    out = encoder(batch.inputs, output_attentions=True)
    heads = torch.ones(2, 4, dtype=torch.bool)
    expected = {
        "none": (0, 0),
        "indirect": (3, 0),
        "direct": (grounded_text, grounded_regions),
        "semi-direct": (grounded_text, grounded_regions),
    }
    for name, counts in expected.items():
        method = build_supervision(SupervisionSection(method=name), config.hidden_size)
        loss = method(out, batch, heads, None)
        assert (int(loss.txt2img_rows), int(loss.img2txt_rows)) == counts, name


def test_the_cheap_rows_give_the_loss_of_the_probabilities():
    config = preset("tiny")
    encoder = VLEncoder(config).eval()
    batch = _batch(config)
    method = Direct()
    rows = method.rows(batch)
    cheap = encoder(batch.inputs, attention_rows=rows[0])
    loss = method(cheap, batch, torch.ones(2, 4, dtype=torch.bool), rows)
    probs = encoder(batch.inputs, output_attentions=True).attention.probs
    full = direct_loss(probs, batch.grounding, batch.inputs.text_mask, batch.inputs.region_mask)
    torch.testing.assert_close(torch.stack(loss), torch.stack(full), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_the_task_weighs_the_attention_loss_by_the_methods_lambda(weight):
    config = preset("tiny")
    encoder = VLEncoder(config).eval()
    batch = _batch(config)
    output = VGPTask(encoder, Direct(weight)).eval()(batch)
    _, parts = output.loss()
    attention = parts["loss_att_txt2img"] + parts["loss_att_img2txt"]
    expected = parts["loss_id"] + parts["loss_vgp"] + weight * attention
    torch.testing.assert_close(parts["loss"], expected)
    assert attention > 0
    assert output.parts["att_txt2img"].weight == output.parts["att_img2txt"].weight == weight
