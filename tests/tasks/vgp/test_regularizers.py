import copy
import math

import pytest
import torch
from torch import Tensor

from groundattn.config import SupervisionSection
from groundattn.model import VLEncoder, preset
from groundattn.tasks.pretrain import PretrainTask
from groundattn.tasks.vgp import VGPTask, build_supervision
from groundattn.tasks.vgp.regularizers import (
    DistillSpec,
    EWCAnchor,
    Regularizers,
    ewc_penalty,
    hidden_distillation,
    kl_distillation,
)

from .test_task import _batch

CLASSES = 5
ALL_TERMS = DistillSpec(
    mlm_weight=0.5, mlm_temperature=2.0, mrc_weight=0.3, mrc_temperature=3.0, hidden_weight=2.0
)


def _config():
    return preset("tiny", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _teacher(config) -> PretrainTask:
    return PretrainTask(VLEncoder(config), CLASSES).eval()


def _perturbed(encoder: VLEncoder, scale: float = 0.05) -> VLEncoder:
    student = copy.deepcopy(encoder)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(scale * torch.randn_like(p))
    return student.requires_grad_(True)


def _ewc(encoder: VLEncoder, weight: float = 3.0) -> EWCAnchor:
    named = dict(encoder.named_parameters())
    return EWCAnchor(
        {n: p.detach().clone() for n, p in named.items()},
        {n: torch.rand_like(p) for n, p in named.items()},
        weight,
    )


def test_kl_by_hand():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    t = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    T = 2.0
    expected = 0.0
    for srow, trow in zip(s.tolist(), t.tolist(), strict=True):
        zs = sum(math.exp(v / T) for v in srow)
        zt = sum(math.exp(v / T) for v in trow)
        p = [math.exp(v / T) / zt for v in trow]
        q = [math.exp(v / T) / zs for v in srow]
        expected += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    assert float(kl_distillation(s, t, T)) == pytest.approx(T * T * expected / 2, rel=1e-6)
    empty = torch.zeros(0, 3, requires_grad=True)
    loss = kl_distillation(empty, empty.detach(), T)
    loss.backward()
    assert float(loss) == 0.0 and not torch.isnan(empty.grad).any()


def test_hidden_distances_by_hand():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    # mse: row 0 (1 + 1)/2 = 1, row 1 (0 + 1)/2 = 0.5; cosine: row 0 1 − 0, row 1 1 − 1.
    assert float(hidden_distillation(s, t, "mse")) == pytest.approx(0.75)
    assert float(hidden_distillation(s, t, "cosine")) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="mse"):
        hidden_distillation(s, t, "l1")


def test_ewc_by_hand():
    theta = {"a": torch.tensor([1.0, 2.0], requires_grad=True), "b": torch.tensor([[3.0]])}
    anchor = {"a": torch.tensor([0.0, 2.0]), "b": torch.tensor([[1.0]])}
    fisher = {"a": torch.tensor([2.0, 5.0]), "b": torch.tensor([[0.5]])}
    # ½ (2·1² + 5·0² + 0.5·2²) = 2
    loss = ewc_penalty(theta, anchor, fisher)
    assert float(loss) == pytest.approx(2.0)
    loss.backward()
    assert theta["a"].grad.tolist() == [2.0, 0.0]  # F (θ − θ*)


def _terms(regularizers: Regularizers, encoder: VLEncoder, inputs) -> tuple[Tensor, dict]:
    """The weighted sum of the regularisers' parts and each part's mean, as ``loss_<name>``."""
    parts = regularizers(encoder, inputs, encoder(inputs))
    total = sum(part.weight * part.mean for part in parts.values())
    return total, {f"loss_{name}": part.mean for name, part in parts.items()}


@pytest.mark.parametrize("hidden_loss", ["mse", "cosine"])
def test_distillation_from_itself_is_zero_with_zero_gradient(hidden_loss):
    config = _config()
    teacher = _teacher(config)
    student = copy.deepcopy(teacher.encoder).requires_grad_(True)
    spec = DistillSpec(1.0, 2.0, 1.0, 2.0, 1.0, hidden_loss)
    regularizers = Regularizers(teacher, spec, _ewc(student))
    batch = _batch(config)
    total, parts = _terms(regularizers, student, batch.inputs)
    assert set(parts) == {"loss_kd_mlm", "loss_kd_mrc", "loss_kd_hidden", "loss_ewc"}
    for name, value in parts.items():
        assert abs(float(value)) < 1e-5, name
    total.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and max(float(g.abs().max()) for g in grads) < 1e-5
    assert all(p.grad is None for p in teacher.parameters())  # the teacher never learns


def test_distillation_by_hand_on_a_tiny_model():
    config = _config()
    teacher = _teacher(config)
    student = _perturbed(teacher.encoder)
    batch = _batch(config)
    _, parts = _terms(Regularizers(teacher, ALL_TERMS), student, batch.inputs)
    hs = student(batch.inputs).last_hidden_state.detach()
    ht = teacher.encoder(batch.inputs).last_hidden_state.detach()
    inputs = batch.inputs
    mlm, mrc, hidden = [], [], []
    for b in range(len(inputs)):
        first_region = True
        for i in range(inputs.input_ids.shape[1]):
            if inputs.text_mask[b, i]:
                zs = teacher.mlm(hs[b, i][None], student.embeddings.word_embeddings.weight)[0]
                zt = teacher.mlm(ht[b, i][None], teacher.encoder.embeddings.word_embeddings.weight)[
                    0
                ]
                p, log_q = torch.softmax(zt / 2, -1), torch.log_softmax(zs / 2, -1)
                mlm.append(4 * float((p * (p.log() - log_q)).sum()))
            if inputs.region_mask[b, i]:
                if not first_region:
                    zs, zt = teacher.mrc(hs[b, i][None])[0], teacher.mrc(ht[b, i][None])[0]
                    p, log_q = torch.softmax(zt / 3, -1), torch.log_softmax(zs / 3, -1)
                    mrc.append(9 * float((p * (p.log() - log_q)).sum()))
                first_region = False
            if inputs.valid_mask[b, i]:
                hidden.append(float(((hs[b, i] - ht[b, i]) ** 2).mean()))
    assert len(mrc) == 3 + 2  # 4 and 3 regions, r0 left out
    assert float(parts["loss_kd_mlm"]) == pytest.approx(sum(mlm) / len(mlm), rel=1e-4)
    assert float(parts["loss_kd_mrc"]) == pytest.approx(sum(mrc) / len(mrc), rel=1e-4)
    assert float(parts["loss_kd_hidden"]) == pytest.approx(sum(hidden) / len(hidden), rel=1e-4)
    assert float(parts["loss_kd_mlm"]) > 0


def test_ewc_at_and_away_from_the_anchor():
    config = _config()
    encoder = VLEncoder(config)
    ewc = _ewc(encoder, weight=3.0)
    batch = _batch(config)
    regularizers = Regularizers(ewc=ewc)
    total, parts = _terms(regularizers, encoder, batch.inputs)
    total.backward()
    assert float(total) == 0.0 and all(float(p.grad.abs().max()) == 0 for p in encoder.parameters())
    moved = _perturbed(encoder)
    moved.embeddings.word_embeddings.weight.requires_grad_(False)  # frozen: not penalised
    total, parts = _terms(regularizers, moved, batch.inputs)
    named = {n: p for n, p in moved.named_parameters() if p.requires_grad}
    by_hand = sum(
        float((ewc.fisher[n] * (p.detach() - ewc.anchor[n]) ** 2).sum()) for n, p in named.items()
    )
    assert float(parts["loss_ewc"]) == pytest.approx(by_hand / 2, rel=1e-5)
    assert float(total) == pytest.approx(3.0 * by_hand / 2, rel=1e-5)
    total.backward()
    q = moved.encoder.layer[0].attention.self.query.weight
    name = "encoder.layer.0.attention.self.query.weight"
    expected = 3.0 * ewc.fisher[name] * (q.detach() - ewc.anchor[name])
    torch.testing.assert_close(q.grad, expected)


@pytest.mark.parametrize("method", ["none", "indirect", "direct", "semi-direct"])
def test_composes_with_every_supervision_method(method):
    config = _config()
    teacher = _teacher(config)
    encoder = _perturbed(teacher.encoder)
    regularizers = Regularizers(teacher, ALL_TERMS, _ewc(teacher.encoder, weight=2.0))
    section = SupervisionSection(method=method)
    task = VGPTask(
        encoder, build_supervision(section, config.hidden_size), regularizers=regularizers
    )
    plain = VGPTask(encoder, build_supervision(section, config.hidden_size))
    plain.load_state_dict(task.state_dict())  # the regularisers add no weights
    batch = _batch(config)
    loss, parts = task(batch).loss()
    _, base = plain(batch).loss()
    expected = (
        base["loss"]
        + 0.5 * parts["loss_kd_mlm"]
        + 0.3 * parts["loss_kd_mrc"]
        + 2.0 * parts["loss_kd_hidden"]
        + 2.0 * parts["loss_ewc"]
    )
    torch.testing.assert_close(parts["loss"], expected)
    assert all(float(parts[k]) > 0 for k in ("loss_kd_mlm", "loss_kd_mrc", "loss_ewc"))
    loss.backward()
    assert encoder.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    assert not any(k.startswith("teacher") for k in task.state_dict())
    validation, _ = task.validate(batch)  # validation: the VGP losses only
    assert set(validation.parts) == {"id", "vgp", "att_txt2img", "att_img2txt"}


def test_mrc_distillation_needs_a_teacher_with_mrc():
    config = _config()
    with pytest.raises(ValueError, match="region-classification head"):
        Regularizers(PretrainTask(VLEncoder(config), 0), DistillSpec(mrc_weight=1.0))
