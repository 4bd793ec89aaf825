"""Pooling of token spans (phrases) into one vector each.

Shapes: B batch, P spans (phrases) per sample, K tokens of the longest span,
N sequence, D hidden.
"""

from __future__ import annotations

import torch
from torch import Tensor

from groundattn.supervision.rows import compact_positions


def max_pool_spans(hidden: Tensor, span_mask: Tensor) -> Tensor:
    """Max-pools the hidden states of exactly each span's own tokens (METHOD §3).

    Only the positions marked in ``span_mask`` are read: a token just before or
    after a phrase never enters its embedding (the authors' defect 2). The span
    tokens are gathered first (K of them, a handful), so the cost does not grow
    with N.

    Args:
        hidden: (B, N, D) final hidden states.
        span_mask: (B, P, N) bool, the tokens of each span; a row without a token is
            a padding span.

    Returns:
        (B, P, D) element-wise maximum over each span's tokens; 0 for padding spans.
    """
    B, P, N = span_mask.shape
    D = hidden.shape[-1]
    tokens, valid = compact_positions(span_mask.reshape(B * P, N))  # (B·P, K)
    K = tokens.shape[1]
    if K == 0:  # no span in the batch (and amax cannot reduce an empty dimension)
        return hidden.new_zeros(B, P, D)
    index = tokens.view(B, P * K, 1).expand(B, P * K, D)  # (B, P·K, D)
    states = hidden.gather(1, index).view(B, P, K, D)  # (B, P, K, D)
    states = states.masked_fill(~valid.view(B, P, K, 1), torch.finfo(hidden.dtype).min)
    pooled = states.amax(dim=2)  # (B, P, D)
    return torch.where(span_mask.any(-1, keepdim=True), pooled, 0.0)  # (B, P, D)
