"""What an adapter is: another model's sequence, located in the terms of the losses.

The losses of :mod:`groundattn.supervision` read attention probabilities
(B, L, H, N, N) together with a grounding (B, N, N) and masks (B, N), all in
*sequence positions* of the model whose attention it is. They know nothing of
how that model lays out its input. An adapter supplies exactly that knowledge
for one model family:

- :meth:`Adapter.layout`: for a batch of the model's own inputs, the sequence
  position of every text input column and every region input column, and which
  of them are real tokens (a :class:`SequenceLayout`);
- :meth:`Adapter.attention`: the model's outputs as one (B, L, H, N, N) tensor.

Everything else is shared: :func:`ground` turns a grounding given in input
columns, (B, T, R) or (text index, region index) pairs, into a
:class:`GroundedSequence` that :func:`~groundattn.supervision.direct_loss`,
:func:`~groundattn.supervision.semi_direct_loss` and
:func:`~groundattn.supervision.grounding_accuracy` take unchanged. A new
single-stream model (ViLT, a UNITER-style encoder) needs a new adapter, not new
losses; most concatenate a text block and a region block, which
:func:`concatenated_layout` already describes.

Conventions follow groundattn's own encoder (:class:`~groundattn.model.VLBatch`):
every real text token is text, special tokens ([CLS], [SEP]) included; every
real region is a region, a whole-image region (r0) included; padding is neither.

Shapes: B batch, T text input columns, R region input columns, N sequence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from groundattn.errors import GroundattnError


class GroundingError(GroundattnError, ValueError):
    """A grounding that does not fit the batch it is given with."""


@dataclass(frozen=True)
class SequenceLayout:
    """Where a batch's text and region input columns sit in the model's sequence."""

    text_positions: Tensor  # (B, T) long: sequence position of text input column t
    region_positions: Tensor  # (B, R) long: sequence position of region input column r
    text_mask: Tensor  # (B, N) bool: real text tokens, [CLS]/[SEP] included
    region_mask: Tensor  # (B, N) bool: real regions, a whole-image region included
    valid_mask: Tensor  # (B, N) bool: every real token (what rollout keeps)

    @property
    def text_valid(self) -> Tensor:
        """(B, T) bool: text input columns that are real tokens."""
        return self.text_mask.gather(1, self.text_positions)

    @property
    def region_valid(self) -> Tensor:
        """(B, R) bool: region input columns that are real regions."""
        return self.region_mask.gather(1, self.region_positions)


@dataclass(frozen=True)
class GroundedSequence:
    """A grounding and masks in sequence positions: the losses' inputs besides attention."""

    grounding: Tensor  # (B, N, N) bool: text position i grounded to region position j
    text_mask: Tensor  # (B, N) bool
    region_mask: Tensor  # (B, N) bool
    valid_mask: Tensor  # (B, N) bool


@runtime_checkable
class Adapter(Protocol):
    """Locates text and regions in one model family's sequence (see the module docstring)."""

    def layout(self, batch: Mapping[str, Tensor]) -> SequenceLayout:
        """The layout of a batch of the model's keyword inputs."""
        ...

    def attention(self, outputs: Any) -> Tensor:
        """(B, L, H, N, N) attention probabilities from the model's outputs."""
        ...


def concatenated_layout(text_valid: Tensor, region_valid: Tensor) -> SequenceLayout:
    """The layout of a text block followed by a region block, each padded on its own.

    This is how VisualBERT and UNITER-style encoders build their sequence:
    ``cat([text embeddings (B, T), region embeddings (B, R)])``, so text column t
    sits at position t and region column r at T + r, whatever the padding. (ViLT
    concatenates the same way, but its image block is an image [CLS] and patches it
    samples at random, so its adapter must also say which patch each column is.) Text
    padding (right-padded or left-padded) therefore sits between a sample's text
    and its regions; the masks, not offsets, say where each sample's tokens are.

    Args:
        text_valid: (B, T) bool, the model's text attention mask.
        region_valid: (B, R) bool, the model's region (visual) attention mask.

    Returns:
        A :class:`SequenceLayout` over N = T + R positions.
    """
    B, T = text_valid.shape
    R = region_valid.shape[1]
    device = text_valid.device
    text_positions = torch.arange(T, device=device).expand(B, T)  # (B, T)
    region_positions = T + torch.arange(R, device=device).expand(B, R)  # (B, R)
    no_regions = torch.zeros_like(region_valid, dtype=torch.bool)  # (B, R)
    no_text = torch.zeros_like(text_valid, dtype=torch.bool)  # (B, T)
    text_mask = torch.cat([text_valid.bool(), no_regions], dim=1)  # (B, N)
    region_mask = torch.cat([no_text, region_valid.bool()], dim=1)  # (B, N)
    return SequenceLayout(
        text_positions=text_positions,
        region_positions=region_positions,
        text_mask=text_mask,
        region_mask=region_mask,
        valid_mask=text_mask | region_mask,
    )


def token_region_matrix(
    pairs: Sequence[Sequence[tuple[int, int]]], num_text: int, num_regions: int
) -> Tensor:
    """A (B, T, R) bool grounding from per-sample (text index, region index) pairs.

    Args:
        pairs: per sample, the (text input column, region input column) pairs; every
            token of a grounded phrase gives a pair, an entity with several boxes one
            pair per box.
        num_text: T, the text input columns of the batch (``input_ids.shape[1]``).
        num_regions: R, the region input columns (``visual_embeds.shape[1]``).

    Raises:
        GroundingError: an index outside [0, T) or [0, R), named with its sample.
    """
    out = torch.zeros(len(pairs), num_text, num_regions, dtype=torch.bool)  # (B, T, R)
    for b, sample in enumerate(pairs):
        for t, r in sample:
            if not (0 <= t < num_text and 0 <= r < num_regions):
                raise GroundingError(
                    f"grounding pair (text {t}, region {r}) of sample {b} is outside the batch's "
                    f"{num_text} text columns and {num_regions} region columns"
                )
            out[b, t, r] = True
    return out


def ground(
    layout: SequenceLayout, token_region: Tensor | Sequence[Sequence[tuple[int, int]]]
) -> GroundedSequence:
    """A grounding given in input columns, moved to the model's sequence positions.

    Args:
        layout: from the model's :meth:`Adapter.layout`.
        token_region: (B, T, R) bool, text input column t grounded to region input
            column r, or per-sample (t, r) pairs (see :func:`token_region_matrix`).

    Returns:
        A :class:`GroundedSequence` on the layout's device.

    Raises:
        GroundingError: a shape that is not (B, T, R) of the layout, or a pair on a
            padding text token or a padding region (padding never enters a loss).
    """
    B, T = layout.text_positions.shape
    R = layout.region_positions.shape[1]
    N = layout.text_mask.shape[1]
    if not isinstance(token_region, Tensor):
        if len(token_region) != B:
            raise GroundingError(f"grounding has {len(token_region)} samples, the batch {B}")
        token_region = token_region_matrix(token_region, T, R)
    if token_region.shape != (B, T, R):
        raise GroundingError(
            f"grounding must be (B, T, R) = {(B, T, R)} bool; got {tuple(token_region.shape)}"
        )
    token_region = token_region.to(layout.text_mask.device).bool()
    on_padding = token_region & ~(layout.text_valid[:, :, None] & layout.region_valid[:, None, :])
    if on_padding.any():
        b, t, r = (int(i) for i in on_padding.nonzero()[0])
        raise GroundingError(
            f"sample {b} grounds text column {t} to region column {r}, but "
            f"{'that text token' if not layout.text_valid[b, t] else 'that region'} is padding"
        )
    b, t, r = token_region.nonzero(as_tuple=True)  # (P,) each: the grounded pairs
    grounding = torch.zeros(B, N, N, dtype=torch.bool, device=token_region.device)
    grounding[b, layout.text_positions[b, t], layout.region_positions[b, r]] = True
    return GroundedSequence(
        grounding=grounding,
        text_mask=layout.text_mask,
        region_mask=layout.region_mask,
        valid_mask=layout.valid_mask,
    )
