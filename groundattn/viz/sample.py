"""One sample's attention cut out of a padded batch, ready to draw.

The drawing functions of :mod:`groundattn.viz` take tensors of one sample with
the padding removed; this module turns the encoder's batch output into them.
It reads masks only (METHOD §6, defect 1: positions differ per sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor


class SampleMasks(Protocol):
    """Anything with per-position masks: a ``VLBatch`` or an ``EncoderOutput``."""

    @property
    def text_mask(self) -> Tensor: ...  # (B, N) bool

    @property
    def region_mask(self) -> Tensor: ...  # (B, N) bool

    @property
    def valid_mask(self) -> Tensor: ...  # (B, N) bool


@dataclass(frozen=True)
class SampleAttention:
    """The attention of one sample over its valid positions only."""

    attention: Tensor  # (L, H, n, n), n valid positions
    text_positions: list[int]  # positions (in 0 … n−1) of the text tokens
    region_positions: list[int]  # positions of r0 … rK

    def rollout(self) -> Tensor:
        """(L, n, n) head-averaged attention rollout (METHOD §5)."""
        from groundattn.supervision import rollout

        n = self.attention.shape[-1]
        valid = self.attention.new_ones(1, n, dtype=bool)  # (1, n)
        return rollout(self.attention[None], valid)[0]


def select_sample(attention: Tensor, masks: SampleMasks, index: int) -> SampleAttention:
    """Cuts sample ``index`` out of a batch, dropping its padding rows and columns.

    Args:
        attention: (B, L, H, N, N) attention probabilities, e.g.
            ``VLEncoder(...)(batch, output_attentions=True).attention.probs``.
        masks: the batch or the encoder output (text, region and valid masks).
        index: the sample.

    Returns:
        A :class:`SampleAttention` whose positions index the valid tokens.
    """
    valid = masks.valid_mask[index]  # (N,)
    keep = valid.nonzero().flatten()  # (n,)
    sample = attention[index][..., keep, :][..., keep]  # (L, H, n, n)
    text = masks.text_mask[index][keep]  # (n,)
    region = masks.region_mask[index][keep]  # (n,)
    return SampleAttention(
        attention=sample.detach().float().cpu(),
        text_positions=text.nonzero().flatten().tolist(),
        region_positions=region.nonzero().flatten().tolist(),
    )
