"""Regularisers against forgetting the pretraining during VGP fine-tuning.

The paper suspects catastrophic forgetting of what VL pretraining taught and
suggests knowledge distillation. Both terms here add to Eq. 9's loss whatever
the attention supervision (none, indirect, direct, semi-direct):

- **Knowledge distillation** from a frozen teacher, by default the model the
  run starts from (``model.init``, "Original", a pretraining run with an MLM
  and a masked-region-classification head). The teacher runs in eval mode,
  without gradients, on the same VGP batch in the same step. Terms:

  - MLM: ``T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))`` over the vocabulary at
    every text position of the sample ([CLS], both captions, [SEP]s). The
    VGP batch is not masked, so this keeps what the MLM head reads off
    every visible word piece, not only off [MASK]; averaged over positions.
  - MRC: the same over the region classes at every region position but
    ``r0`` (MRC never classified the whole image); averaged over regions.
  - hidden: ``mean_D (h_s − h_t)²`` or ``1 − cos(h_s, h_t)`` of the final
    hidden states at every valid position (text, regions, [END]).

  The ``T²`` keeps the gradients' scale independent of ``T`` (Hinton et al.).
  Each is a mean over the positions of the global batch (a :class:`LossPart`).

- **EWC** (Kirkpatrick et al. 2017): ``λ/2 · Σ_i F_i (θ_i − θ*_i)²`` over the
  encoder's trained parameters, ``θ*`` the anchor (``model.init``) and ``F``
  the diagonal Fisher of the pretraining objective there
  (:mod:`groundattn.train.fisher` estimates and stores it).

The terms join the training loss only (logged as ``loss_kd_mlm``,
``loss_kd_mrc``, ``loss_kd_hidden``, ``loss_ewc``, unweighted); validation
reports the VGP losses and metrics, so rows with and without them compare.

The student reads its distributions through the *teacher's* heads, frozen
(the MLM decoder tied, as in BERT, to the student's own word embeddings).
Trainable copies would let the heads absorb the encoder's drift (the KL would
fall while the encoder forgets); frozen, the heads are a fixed read-out of
what pretraining taught, and the VGP model needs no extra weights: its
checkpoints and export are those of a plain VGP run.

:class:`Regularizers` is deliberately not an ``nn.Module``: the teacher and
the anchor are not the VGP model's weights, so they stay out of its
``state_dict``, checkpoints, export, optimizer and DDP. It moves itself to
the student's device on first use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from groundattn.model import EncoderOutput, VLBatch, VLEncoder
from groundattn.tasks.common import LossPart
from groundattn.tasks.pretrain import PretrainTask


def kl_distillation(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Mean over rows of ``T² · KL(softmax(t/T) ‖ softmax(s/T))``; (M, C) each.

    0 (with a graph) when M is 0.
    """
    if not len(student_logits):
        return student_logits.sum() * 0
    T = temperature
    log_s = F.log_softmax(student_logits.float() / T, -1)  # (M, C)
    log_t = F.log_softmax(teacher_logits.float() / T, -1)  # (M, C)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # (M,)
    return T * T * kl.mean()


def hidden_distillation(student: Tensor, teacher: Tensor, kind: str = "mse") -> Tensor:
    """Mean over rows of ``mean_D (s − t)²`` (mse) or ``1 − cos(s, t)`` (cosine); (M, D) each."""
    if not len(student):
        return student.sum() * 0
    s, t = student.float(), teacher.float()
    if kind == "mse":
        return (s - t).pow(2).mean(-1).mean()
    if kind == "cosine":
        return (1 - F.cosine_similarity(s, t, dim=-1)).mean()
    raise ValueError(f"kind must be 'mse' or 'cosine', got {kind!r}")


def ewc_penalty(
    parameters: dict[str, Tensor], anchor: dict[str, Tensor], fisher: dict[str, Tensor]
) -> Tensor:
    """``1/2 · Σ_i F_i (θ_i − θ*_i)²`` over the named parameters (λ is applied by the caller)."""
    terms = [
        (fisher[name] * (p.float() - anchor[name]).pow(2)).sum() for name, p in parameters.items()
    ]
    if not terms:  # every parameter frozen
        return torch.zeros(())
    return 0.5 * torch.stack(terms).sum()


@dataclass(frozen=True)
class DistillSpec:
    """Weights and temperatures of the distillation terms (0: term off)."""

    mlm_weight: float = 0.0
    mlm_temperature: float = 2.0
    mrc_weight: float = 0.0
    mrc_temperature: float = 2.0
    hidden_weight: float = 0.0
    hidden_loss: str = "mse"


@dataclass
class EWCAnchor:
    """θ* and F of every encoder parameter (same names and shapes as the encoder's), and λ."""

    anchor: dict[str, Tensor]
    fisher: dict[str, Tensor]
    weight: float


class Regularizers:
    """Knowledge distillation and/or EWC for a VGP task (see the module docstring)."""

    def __init__(
        self,
        teacher: PretrainTask | None = None,
        distill: DistillSpec | None = None,
        ewc: EWCAnchor | None = None,
    ):
        if (teacher is None) != (distill is None):
            raise ValueError("distillation needs both a teacher and a DistillSpec")
        if distill is not None and distill.mrc_weight and teacher.mrc is None:
            raise ValueError(
                "distill.mrc_weight > 0, but the teacher has no region-classification head "
                "(its pretraining ran without MRC)"
            )
        self.teacher, self.distill, self.ewc = teacher, distill, ewc
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        self.device: torch.device | None = None

    def to(self, device: torch.device) -> Regularizers:
        if self.teacher is not None:
            self.teacher.to(device)
        if self.ewc is not None:
            for tensors in (self.ewc.anchor, self.ewc.fisher):
                for name, value in tensors.items():
                    tensors[name] = value.to(device, torch.float32)
        self.device = device
        return self

    def __call__(
        self, encoder: VLEncoder, inputs: VLBatch, out: EncoderOutput
    ) -> dict[str, LossPart]:
        """The terms as weighted loss parts: ``kd_mlm``, ``kd_mrc``, ``kd_hidden``, ``ewc``."""
        hidden = out.last_hidden_state  # (B, N, D)
        if self.device != hidden.device:
            self.to(hidden.device)
        parts = {} if self.distill is None else self._distill(encoder, inputs, out)
        if self.ewc is not None:
            trained = {n: p for n, p in encoder.named_parameters() if p.requires_grad}
            penalty = ewc_penalty(trained, self.ewc.anchor, self.ewc.fisher)
            # One penalty a process, the same on each: its global mean is itself.
            one = torch.ones((), dtype=torch.long, device=hidden.device)
            parts["ewc"] = LossPart(penalty, one, self.ewc.weight)
        return parts

    def _distill(self, encoder, inputs, out) -> dict[str, LossPart]:
        spec, teacher = self.distill, self.teacher
        teacher.eval()  # never dropout, whatever mode the student is in
        with torch.no_grad():
            taught = teacher.encoder(inputs).last_hidden_state  # (B, N, D)
        hidden = out.last_hidden_state  # (B, N, D)
        text = inputs.text_mask  # (B, N)
        terms: dict[str, LossPart] = {}
        if spec.mlm_weight:
            student = teacher.mlm(hidden[text], encoder.embeddings.word_embeddings.weight)  # (M, V)
            with torch.no_grad():
                target = teacher.mlm(
                    taught[text], teacher.encoder.embeddings.word_embeddings.weight
                )
            loss = kl_distillation(student, target, spec.mlm_temperature)
            terms["kd_mlm"] = LossPart(loss, text.sum(), spec.mlm_weight)
        if spec.mrc_weight:
            classified = inputs.candidate_mask  # every region but r0
            student = teacher.mrc(hidden[classified])  # (M', C)
            with torch.no_grad():
                target = teacher.mrc(taught[classified])
            loss = kl_distillation(student, target, spec.mrc_temperature)
            terms["kd_mrc"] = LossPart(loss, classified.sum(), spec.mrc_weight)
        if spec.hidden_weight:
            valid = inputs.valid_mask  # (B, N)
            loss = hidden_distillation(hidden[valid], taught[valid], spec.hidden_loss)
            terms["kd_hidden"] = LossPart(loss, valid.sum(), spec.hidden_weight)
        return terms
