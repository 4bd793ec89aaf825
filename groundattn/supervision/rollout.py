"""Attention rollout and semi-direct supervision (METHOD §5, Abnar & Zuidema 2020).

``Â_l = rownorm(mean_h A[l, h] + I)``, ``R_1 = Â_1``, ``R_l = Â_l · R_{l−1}``; per head,
``R_{l,h} = rownorm(A[l, h] + I) · R_{l−1,h}``. Semi-direct supervision is direct
supervision (:func:`~groundattn.supervision.direct.direct_loss`) applied to ``R_l``.

Shapes: B batch, L layers, H heads, N sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor

from groundattn.supervision.direct import NORMALIZATIONS, VARIANTS, direct_loss
from groundattn.supervision.rows import SupervisionLoss, check_choice


def rollout(attn: Tensor, valid_mask: Tensor, *, per_head: bool = False) -> Tensor:
    """Attention rollout of every layer.

    The identity (the residual connection) is added on valid positions only and
    padding rows and columns are zeroed before the row normalisation, so padding
    never leaks into a valid row: each valid row of the result is a distribution
    over the valid columns, and padding rows are 0.

    Args:
        attn: (B, L, H, N, N) attention probabilities.
        valid_mask: (B, N) bool, every real token (text, regions, [END]).
        per_head: roll out each head separately instead of the head average.

    Returns:
        (B, L, N, N), or (B, L, H, N, N) with ``per_head``.
    """
    B, L, H, N, _ = attn.shape
    mixed = attn if per_head else attn.mean(2, keepdim=True)  # (B, L, H', N, N), H' = H or 1
    pair_mask = valid_mask[:, :, None] & valid_mask[:, None, :]  # (B, N, N)
    identity = torch.diag_embed(valid_mask.to(attn.dtype))  # (B, N, N)
    mixed = torch.where(pair_mask[:, None, None], mixed, 0.0) + identity[:, None, None]
    # Valid rows sum to at least 1 (the identity); padding rows are all 0.
    mixed = mixed / mixed.sum(-1, keepdim=True).clamp_min(1e-12)  # (B, L, H', N, N)

    rolled = [mixed[:, 0]]  # each (B, H', N, N)
    for layer in range(1, L):
        rolled.append(mixed[:, layer] @ rolled[-1])
    result = torch.stack(rolled, dim=1)  # (B, L, H', N, N)
    return result if per_head else result.squeeze(2)


def semi_direct_loss(
    attn: Tensor,
    grounding: Tensor,
    text_mask: Tensor,
    region_mask: Tensor,
    valid_mask: Tensor,
    *,
    variant: str = "paper",
    per_head: bool = False,
    normalization: str = "linear",
) -> SupervisionLoss:
    """Semi-direct supervision: :func:`direct_loss` on the attention rollout.

    Args:
        attn: (B, L, H, N, N) attention probabilities.
        grounding: (B, N, N) bool, text token i grounded to region token j.
        text_mask: (B, N) bool.
        region_mask: (B, N) bool.
        valid_mask: (B, N) bool, every real token.
        variant: ``"paper"`` or ``"reference"`` (see :func:`direct_loss`).
        per_head: supervise the per-head rollout (L × H classifiers) instead of the
            head-averaged one (L classifiers, the authors' choice).
        normalization: ``"linear"`` or ``"softmax"``, for ``"reference"``.

    Returns:
        A :class:`SupervisionLoss`, averaged over layers (and heads with ``per_head``).
    """
    check_choice("variant", variant, VARIANTS)  # before the rollout, not after
    check_choice("normalization", normalization, NORMALIZATIONS)
    rolled = rollout(attn, valid_mask, per_head=per_head)
    if not per_head:
        rolled = rolled[:, :, None]  # (B, L, 1, N, N): one "head" per layer
    return direct_loss(
        rolled, grounding, text_mask, region_mask, variant=variant, normalization=normalization
    )
