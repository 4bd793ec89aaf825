"""The attention-supervision methods of VGP fine-tuning, one module each (METHOD §3–§5).

A method is built from the config's ``supervision`` section
(:func:`build_supervision`) and passed to :class:`~groundattn.tasks.vgp.VGPTask`.
It declares what it needs from the encoder (:class:`Needs`), chooses the
attention rows the encoder should return logits for (:meth:`Supervision.rows`),
and returns its loss as a :class:`~groundattn.supervision.SupervisionLoss`
whose two directions carry the counts they are means over, so the task turns
them into global-batch means in one place. A new method is one class here and
one entry in :data:`METHODS`.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from groundattn.model import EncoderOutput
from groundattn.supervision import (
    IndirectGroundingClassifier,
    SupervisionLoss,
    direct_loss,
    direct_loss_from_logits,
    indirect_loss,
    rollout,
    supervised_rows,
)
from groundattn.tasks.vgp.dataset import VGPBatch


class Needs(enum.Enum):
    """What a method reads from the encoder's forward pass in training."""

    NOTHING = "nothing"
    FINAL_STATES = "final hidden states"
    ROW_LOGITS = "logits of the supervised attention rows"
    PROBABILITIES = "full attention probabilities"


def select_heads(attn: Tensor, head_mask: Tensor) -> Tensor:
    """(B, L, H, …) → (B, 1, K, …): the supervised (layer, head) pairs (all by default)."""
    if bool(head_mask.all()):
        return attn
    return attn[:, head_mask][:, None]


Rows = tuple[Tensor, Tensor]  # (B, Q) long supervised positions and their (B, Q) mask


class Supervision(nn.Module, ABC):
    """Base of the methods. ``weight`` is λ of Eq. 9."""

    needs = Needs.NOTHING

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    @classmethod
    def from_section(cls, section, hidden_size: int) -> Supervision:
        """The method of a config's ``supervision`` section."""
        return cls(section.weight)

    def rows(self, batch: VGPBatch) -> Rows | None:
        """The attention rows whose logits the encoder should return (None: none)."""
        return None

    @abstractmethod
    def forward(
        self, out: EncoderOutput, batch: VGPBatch, head_mask: Tensor, rows: Rows | None
    ) -> SupervisionLoss:
        """The loss of one batch; ``head_mask`` (L, H) bool, the supervised heads."""


class NoSupervision(Supervision):
    """The "w/o attention" row: L_id + L_vgp alone."""

    def forward(self, out, batch, head_mask, rows) -> SupervisionLoss:
        zero = out.last_hidden_state.sum() * 0
        count = torch.zeros((), dtype=torch.long, device=zero.device)
        return SupervisionLoss(zero, zero, count, count)


class Indirect(Supervision):
    """Eq. 5: a classifier of (phrase, region) final states, BCE against the grounding."""

    needs = Needs.FINAL_STATES

    def __init__(self, hidden_size: int, weight: float = 1.0):
        super().__init__(weight)
        self.classifier = IndirectGroundingClassifier(hidden_size)

    @classmethod
    def from_section(cls, section, hidden_size):
        return cls(hidden_size, section.weight)

    def forward(self, out, batch, head_mask, rows) -> SupervisionLoss:
        grounded = batch.phrase_regions.any(-1, keepdim=True)  # (B, P, 1)
        return indirect_loss(
            out.last_hidden_state,
            batch.phrase_mask & grounded,
            batch.phrase_regions,
            batch.inputs.candidate_mask,
            self.classifier,
        )


class Direct(Supervision):
    """Eqs. 6–8 on every supervised head. The paper's formula reads the cheap logits
    of the supervised rows; the authors' reference formula needs the probabilities."""

    def __init__(self, weight: float = 1.0, variant: str = "paper", normalization: str = "linear"):
        super().__init__(weight)
        self.variant, self.normalization = variant, normalization
        self.needs = Needs.ROW_LOGITS if variant == "paper" else Needs.PROBABILITIES

    @classmethod
    def from_section(cls, section, hidden_size):
        return cls(section.weight, section.variant, section.normalization)

    def rows(self, batch):
        return supervised_rows(batch.grounding) if self.needs is Needs.ROW_LOGITS else None

    def forward(self, out, batch, head_mask, rows) -> SupervisionLoss:
        g, text, regions = batch.grounding, out.text_mask, out.region_mask
        if rows is not None:
            logits = select_heads(out.attention.row_logits.float(), head_mask)
            return direct_loss_from_logits(logits, *rows, g, text, regions)
        probs = select_heads(out.attention.probs.float(), head_mask)
        return direct_loss(
            probs, g, text, regions, variant=self.variant, normalization=self.normalization
        )


class SemiDirect(Supervision):
    """§5: the direct loss on the attention rollout of each layer (head-averaged by
    default, per head with ``per_head``); only the supervised heads' layers count."""

    needs = Needs.PROBABILITIES

    def __init__(
        self,
        weight: float = 1.0,
        variant: str = "paper",
        normalization: str = "linear",
        per_head: bool = False,
    ):
        super().__init__(weight)
        self.variant, self.normalization, self.per_head = variant, normalization, per_head

    @classmethod
    def from_section(cls, section, hidden_size):
        return cls(section.weight, section.variant, section.normalization, section.per_head)

    def forward(self, out, batch, head_mask, rows) -> SupervisionLoss:
        rolled = rollout(out.attention.probs.float(), out.valid_mask, per_head=self.per_head)
        if self.per_head:
            rolled = select_heads(rolled, head_mask)
        else:
            rolled = rolled[:, head_mask.any(1)][:, :, None]  # (B, L', 1, N, N)
        return direct_loss(
            rolled,
            batch.grounding,
            out.text_mask,
            out.region_mask,
            variant=self.variant,
            normalization=self.normalization,
        )


METHODS: dict[str, type[Supervision]] = {
    "none": NoSupervision,
    "indirect": Indirect,
    "direct": Direct,
    "semi-direct": SemiDirect,
}


def build_supervision(section, hidden_size: int) -> Supervision:
    """The method named by ``section.method`` (a :class:`~groundattn.config.SupervisionSection`)."""
    if section.method not in METHODS:
        raise ValueError(
            f"supervision.method must be one of {list(METHODS)}, got {section.method!r}"
        )
    return METHODS[section.method].from_section(section, hidden_size)
