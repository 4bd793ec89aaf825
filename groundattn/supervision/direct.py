"""Direct attention supervision (METHOD §4, Eqs. 6–8).

Every attention head of every layer is read as a classifier: a grounded text
token should attend to its grounded region(s) once its attention is
renormalised over the region columns (text → image), and a grounded region to
the text tokens grounded to it once renormalised over the text columns
(image → text).

Both entry points gather the supervised rows first and share one core working
on log-scores s of those rows. Renormalising probabilities over a column subset
S is a ``log_softmax`` over S of any score that differs from ``log p`` by a
per-row constant, so the cross-entropy to a target t is
``logsumexp_S s − Σ_j t_j s_j`` for s = ``log p`` (:func:`direct_loss`) as well as
for the raw logits ``q·k/√d`` (:func:`direct_loss_from_logits`, the encoder's
cheap path, which never builds the full N×N map). For probabilities the
normaliser is computed as ``log Σ_S p``, the same number as ``logsumexp_S log p``
without an exponential per entry.

Shapes: B batch, L layers, H heads, N sequence, Q supervised rows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from groundattn.supervision.reference import reference_direct_loss
from groundattn.supervision.rows import (
    RowTargets,
    SupervisionLoss,
    at_least_float32,
    check_choice,
    gather_rows,
    gather_targets,
    mean_over_rows,
    row_targets,
    supervised_rows,
)

VARIANTS = ("paper", "reference")
NORMALIZATIONS = ("linear", "softmax")


def direct_loss(
    attn: Tensor,
    grounding: Tensor,
    text_mask: Tensor,
    region_mask: Tensor,
    *,
    variant: str = "paper",
    normalization: str = "linear",
) -> SupervisionLoss:
    """Direct attention supervision on attention probabilities.

    Args:
        attn: (B, L, H, N, N) attention probabilities; each row sums to 1 over the
            sample's valid columns, padding columns are 0.
        grounding: (B, N, N) bool, ``grounding[b, i, j]``: text token i is grounded to
            region token j (several j for an entity with several boxes).
        text_mask: (B, N) bool, the text positions W of each sample ([CLS]/[SEP] included).
        region_mask: (B, N) bool, the region positions R of each sample (r0 included).
        variant: ``"paper"`` (METHOD §4) or ``"reference"`` (the authors' released
            formulas, METHOD §6, without their defects).
        normalization: ``"linear"`` or ``"softmax"``; only read by ``"reference"``.

    Returns:
        The two directions, each averaged over layers, heads and supervised rows of the
        batch; exactly 0 (with a zero gradient) when nothing is grounded.

    Raises:
        ValueError: unknown ``variant`` or ``normalization``, or (``"reference"`` only)
            a text token grounded to several regions.
    """
    check_choice("variant", variant, VARIANTS)
    check_choice("normalization", normalization, NORMALIZATIONS)
    if variant == "reference":
        return reference_direct_loss(attn, grounding, text_mask, region_mask, normalization)
    rows, row_mask = supervised_rows(grounding)  # (B, Q), (B, Q)
    targets = row_targets(rows, row_mask, grounding, text_mask, region_mask)
    row_attn = gather_rows(attn, rows)  # (B, L, H, Q, N)
    # Eq. 6 in log space: log â_j = log p_j − log Σ_{j'∈S} p_j'. Zero probabilities (padding
    # columns, underflow) are clamped to the smallest normal float: a finite log whose
    # gradient is cut, so a zero never turns into a NaN gradient.
    tiny = torch.finfo(row_attn.dtype).tiny
    # A masked sum, not einsum: einsum copies the big operand into a bmm layout, several
    # times slower on CPU for these shapes.
    columns = targets.columns[:, None, None]  # (B, 1, 1, Q, N)
    row_mass = (row_attn * columns).sum(-1)  # (B, L, H, Q): Σ_S p
    target_attn, weights = gather_targets(row_attn, targets)  # (B, L, H, Q, K), (B, 1, 1, Q, K)
    target_score = (target_attn.clamp_min(tiny).log() * weights).sum(-1)  # Σ_j t_j log p_j
    return _cross_entropy(target_score, row_mass.clamp_min(tiny).log(), targets)


def direct_loss_from_logits(
    row_logits: Tensor,
    rows: Tensor,
    row_mask: Tensor,
    grounding: Tensor,
    text_mask: Tensor,
    region_mask: Tensor,
) -> SupervisionLoss:
    """The paper variant of :func:`direct_loss` from the raw logits of the supervised rows.

    Equals ``direct_loss(softmax(logits with padding columns masked), ...)``: the
    logits and the log-probabilities of a row differ by a constant that the
    renormalisation over region (or text) columns cancels.

    Args:
        row_logits: (B, L, H, Q, N) attention logits ``q·k/√d`` of rows ``rows`` against
            every column; padding columns may hold any finite value.
        rows: (B, Q) long, from :func:`supervised_rows` of ``grounding``.
        row_mask: (B, Q) bool, False on padding rows.
        grounding: (B, N, N) bool.
        text_mask: (B, N) bool.
        region_mask: (B, N) bool.

    Returns:
        A :class:`SupervisionLoss`.
    """
    row_logits = at_least_float32(row_logits)  # (B, L, H, Q, N)
    targets = row_targets(rows, row_mask, grounding, text_mask, region_mask)
    columns = targets.columns[:, None, None]  # (B, 1, 1, Q, N)
    fill = torch.finfo(row_logits.dtype).min  # not -inf: an empty row stays finite
    log_norm = row_logits.masked_fill(~columns, fill).logsumexp(-1)  # (B, L, H, Q)
    target_logits, weights = gather_targets(row_logits, targets)  # (B, L, H, Q, K)
    # torch.where, not a product: a padding slot reads column 0, which may hold any value.
    target_logits = torch.where(weights > 0, target_logits, 0.0)  # (B, L, H, Q, K)
    target_score = (target_logits * weights).sum(-1)  # (B, L, H, Q): Σ_j t_j s_j
    return _cross_entropy(target_score, log_norm, targets)


def _cross_entropy(target_score: Tensor, log_norm: Tensor, targets: RowTargets) -> SupervisionLoss:
    """The shared core: cross-entropy of the renormalised rows to their targets (Eq. 7).

    With log-scores s of a row (log-probabilities or logits: they differ by a per-row
    constant), its renormalisation over its columns S and a target t uniform over the
    grounded columns, ``CE = −Σ_j t_j (s_j − logsumexp_S s) = logsumexp_S s − Σ_j t_j s_j``.
    One grounded region gives −log â[j*] (Eq. 7); an entity with several boxes the
    cross-entropy to the uniform distribution over them.

    Args:
        target_score: (B, L, H, Q) ``Σ_j t_j s_j``.
        log_norm: (B, L, H, Q) ``logsumexp_S s`` (up to the same per-row constant).
        targets: the rows' :class:`RowTargets`.

    Returns:
        Each direction averaged over layers, heads and its rows in the batch.
    """
    nll = log_norm - target_score  # (B, L, H, Q)
    return SupervisionLoss(
        txt2img=mean_over_rows(nll, targets.is_text_row),
        img2txt=mean_over_rows(nll, targets.is_region_row),
        txt2img_rows=targets.is_text_row.sum(),
        img2txt_rows=targets.is_region_row.sum(),
    )
