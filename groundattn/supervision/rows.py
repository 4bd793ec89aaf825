"""Supervised attention rows: which rows direct supervision reads, and their targets.

Direct supervision (METHOD §4) only reads the attention rows of grounded text
tokens (against region columns) and of grounded regions (against text
columns). Gathering those Q rows first and normalising only them is what makes
the losses cheap: the full (B, L, H, N, N) tensor is never renormalised.

Shapes: B batch, L layers, H heads, N sequence, Q supervised rows per sample
(padded to the batch maximum).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class SupervisionLoss(NamedTuple):
    """The two directions of an attention-supervision loss (Eq. 8 sums them).

    Each direction is a mean, and carries what it is a mean over in this batch
    (grounded text tokens, grounded regions; phrases for the indirect loss), so
    that data-parallel training can turn it into the global batch's mean.
    """

    txt2img: Tensor  # scalar
    img2txt: Tensor  # scalar
    txt2img_rows: Tensor  # scalar long: the rows (or phrases) txt2img averages
    img2txt_rows: Tensor  # scalar long: the rows img2txt averages

    @property
    def total(self) -> Tensor:
        """``txt2img + img2txt``."""
        return self.txt2img + self.img2txt


class RowTargets(NamedTuple):
    """What each supervised row is compared with; every field is (B, Q) or (B, Q, N)."""

    is_text_row: Tensor  # (B, Q) bool: a grounded text token, read against region columns
    is_region_row: Tensor  # (B, Q) bool: a grounded region, read against text columns
    columns: Tensor  # (B, Q, N) bool: the columns the row is renormalised over
    target: Tensor  # (B, Q, N) bool: the grounded columns of the row (multi-hot)


def compact_positions(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Lists the True positions of each row of a mask, left-aligned and padded.

    Args:
        mask: (B, N) bool.

    Returns:
        ``positions`` (B, K) long, the True positions of each sample in increasing
        order, padded with 0, and ``valid`` (B, K) bool, False on padding; K is the
        largest count in the batch (0 when the mask is empty).
    """
    counts = mask.sum(-1)  # (B,)
    K = int(counts.max()) if counts.numel() > 0 else 0
    # A stable sort on "not selected" moves the selected positions to the front, in order.
    order = torch.argsort((~mask).to(torch.uint8), dim=-1, stable=True)[:, :K]  # (B, K)
    valid = torch.arange(K, device=mask.device) < counts[:, None]  # (B, K)
    return order.masked_fill(~valid, 0), valid


def supervised_rows(grounding: Tensor) -> tuple[Tensor, Tensor]:
    """The attention rows that direct supervision reads.

    A row is supervised when its position is a grounded text token
    (``grounding.any(-1)``) or a grounded region (``grounding.any(-2)``).

    Args:
        grounding: (B, N, N) bool, ``grounding[b, i, j]``: text token i is grounded
            to region token j.

    Returns:
        ``rows`` (B, Q) long, the supervised positions of each sample in increasing
        sequence order (text tokens and regions interleaved as they sit in the
        sequence), padded with 0; ``row_mask`` (B, Q) bool, False on padding.
    """
    is_row = grounding.any(-1) | grounding.any(-2)  # (B, N)
    return compact_positions(is_row)


def gather_rows(attn: Tensor, rows: Tensor) -> Tensor:
    """Selects attention rows per sample, in at least float32.

    The losses are computed in float32 even under mixed precision: a float16
    probability below its smallest normal (6e-5) is common early in training.
    Only the Q gathered rows are converted, never the full map.

    Args:
        attn: (B, L, H, N, N).
        rows: (B, Q) long positions.

    Returns:
        (B, L, H, Q, N), ``attn[b, :, :, rows[b, q], :]``.
    """
    B, L, H, N, _ = attn.shape
    index = rows[:, None, None, :, None].expand(B, L, H, rows.shape[1], N)  # (B, L, H, Q, N)
    return at_least_float32(attn.gather(3, index))  # (B, L, H, Q, N)


def at_least_float32(x: Tensor) -> Tensor:
    """``x`` in float32, or in its own dtype when that is wider (float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def row_targets(
    rows: Tensor, row_mask: Tensor, grounding: Tensor, text_mask: Tensor, region_mask: Tensor
) -> RowTargets:
    """Columns and grounded targets of each supervised row (METHOD §4).

    A text row is renormalised over the sample's region columns and targets its
    grounded regions; a region row is renormalised over the sample's text
    columns and targets the text tokens grounded to it.

    Args:
        rows: (B, Q) long, from :func:`supervised_rows`.
        row_mask: (B, Q) bool.
        grounding: (B, N, N) bool.
        text_mask: (B, N) bool.
        region_mask: (B, N) bool.

    Returns:
        A :class:`RowTargets`.
    """
    B, N, _ = grounding.shape
    Q = rows.shape[1]
    is_text_row = grounding.any(-1).gather(1, rows) & row_mask  # (B, Q)
    is_region_row = grounding.any(-2).gather(1, rows) & row_mask  # (B, Q)
    index = rows[:, :, None].expand(B, Q, N)  # (B, Q, N)
    regions_of_text = grounding.gather(1, index)  # (B, Q, N): grounding[b, rows[q], :]
    texts_of_region = grounding.transpose(1, 2).gather(1, index)  # (B, Q, N): grounding[b, :, rows]
    text_row = is_text_row[:, :, None]  # (B, Q, 1)
    columns = torch.where(text_row, region_mask[:, None, :], text_mask[:, None, :])  # (B, Q, N)
    target = torch.where(text_row, regions_of_text, texts_of_region)  # (B, Q, N)
    target = target & (is_text_row | is_region_row)[:, :, None]  # (B, Q, N)
    return RowTargets(is_text_row, is_region_row, columns, target)


def gather_targets(row_scores: Tensor, targets: RowTargets) -> tuple[Tensor, Tensor]:
    """The scores of each row's grounded columns, with uniform target weights.

    Rows have few grounded columns (K: the most boxes of an entity, or the most
    tokens grounded to one region), so reading them by index is much cheaper than
    masking all N columns.

    Args:
        row_scores: (B, L, H, Q, N) scores of the supervised rows.
        targets: from :func:`row_targets`.

    Returns:
        ``scores`` (B, L, H, Q, K), the scores of the grounded columns (padding slots
        read column 0: mask them with the weights), and ``weights`` (B, 1, 1, Q, K), the
        uniform target distribution over each row's grounded columns, 0 on padding.
    """
    B, L, H, Q, N = row_scores.shape
    columns, valid = compact_positions(targets.target.reshape(B * Q, N))  # (B·Q, K)
    K = columns.shape[1]
    weights = valid.to(row_scores.dtype)  # (B·Q, K)
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(1)
    index = columns.view(B, 1, 1, Q, K).expand(B, L, H, Q, K)  # (B, L, H, Q, K)
    return row_scores.gather(-1, index), weights.view(B, 1, 1, Q, K)


def mean_over_rows(per_row: Tensor, selected: Tensor) -> Tensor:
    """Mean of ``per_row`` (B, L, H, Q) over layers, heads and the selected (B, Q) rows.

    Returns 0, still attached to the graph, when no row is selected.
    """
    _, L, H, _ = per_row.shape
    count = selected.sum().clamp_min(1) * (L * H)
    return torch.where(selected[:, None, None], per_row, 0.0).sum() / count


def check_choice(name: str, value: str, accepted: tuple[str, ...]) -> None:
    """Raises ValueError naming the accepted values when ``value`` is not one of them."""
    if value not in accepted:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, accepted))}; got {value!r}")
