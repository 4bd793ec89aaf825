"""Pooling of token spans (phrases) into one vector each.

Shapes: B batch, P spans (phrases) per sample, N sequence, D hidden.
"""

from __future__ import annotations

import torch
from torch import Tensor


def max_pool_spans(hidden: Tensor, span_mask: Tensor) -> Tensor:
    """Max-pools the hidden states of exactly each span's own tokens (METHOD §3).

    Only the positions marked in ``span_mask`` are read: a token just before or
    after a phrase never enters its embedding (the authors' defect 2).

    Args:
        hidden: (B, N, D) final hidden states.
        span_mask: (B, P, N) bool, the tokens of each span; a row without a token is
            a padding span.

    Returns:
        (B, P, D) element-wise maximum over each span's tokens; 0 for padding spans.
    """
    fill = torch.finfo(hidden.dtype).min
    masked = hidden[:, None].masked_fill(~span_mask[..., None], fill)  # (B, P, N, D)
    pooled = masked.amax(dim=2)  # (B, P, D)
    return torch.where(span_mask.any(-1, keepdim=True), pooled, 0.0)  # (B, P, D)
