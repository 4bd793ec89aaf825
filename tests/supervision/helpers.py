"""Small builders shared by the supervision tests."""

from __future__ import annotations

import torch
from torch import Tensor


def mask(n: int, positions: list[int]) -> Tensor:
    """(1, n) bool mask with True at ``positions``."""
    out = torch.zeros(1, n, dtype=torch.bool)
    out[0, positions] = True
    return out


def grounding_of(n: int, pairs: list[tuple[int, int]], batch: int = 1) -> Tensor:
    """(batch, n, n) bool grounding of the (text, region) pairs, in every sample."""
    out = torch.zeros(batch, n, n, dtype=torch.bool)
    for i, j in pairs:
        out[:, i, j] = True
    return out


def uniform_attention(valid: Tensor, L: int = 1, H: int = 1) -> Tensor:
    """(B, L, H, N, N): every valid row uniform over the valid columns, padding 0."""
    B, N = valid.shape
    cols = valid.float() / valid.sum(-1, keepdim=True).float()  # (B, N)
    attn = cols[:, None, None, None, :].expand(B, L, H, N, N).clone()
    return torch.where(valid[:, None, None, :, None], attn, 0.0)


def gather_row_logits(logits: Tensor, rows: Tensor) -> Tensor:
    """(B, L, H, Q, N) rows of (B, L, H, N, N) logits, as the encoder's cheap path gives them."""
    B = logits.shape[0]
    return logits[torch.arange(B)[:, None], :, :, rows].permute(0, 2, 3, 1, 4)


def masked_softmax(logits: Tensor, valid: Tensor) -> Tensor:
    """Attention probabilities over valid columns; padding rows and columns 0."""
    probs = logits.masked_fill(~valid[:, None, None, None, :], float("-inf")).softmax(-1)
    return torch.where(valid[:, None, None, :, None], probs, 0.0)


def pad_sample(
    attn: Tensor, grounding: Tensor, masks: list[Tensor], extra: int
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Appends ``extra`` padding positions (zero attention, False masks) to a batch."""
    B, L, H, N, _ = attn.shape
    padded = torch.zeros(B, L, H, N + extra, N + extra)
    padded[..., :N, :N] = attn
    g = torch.zeros(B, N + extra, N + extra, dtype=torch.bool)
    g[:, :N, :N] = grounding
    new_masks = []
    for m in masks:
        out = torch.zeros(B, N + extra, dtype=torch.bool)
        out[:, :N] = m
        new_masks.append(out)
    return padded, g, new_masks
