"""Attention grounding accuracy (METHOD §8, after Li et al. 2020).

For each grounded text token: is the arg-max of its attention over the
sample's region columns one of its grounded regions? Counted per (layer, head).

Shapes: B batch, L layers, H heads, N sequence, Q grounded text tokens per sample,
P phrases per sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from groundattn.supervision.rows import compact_positions, gather_rows


def grounding_hits(attn: Tensor, grounding: Tensor, region_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Counts the grounded text tokens whose attention arg-max over regions is right.

    The counts add up over batches and processes (sum both, divide at the end).

    Args:
        attn: (B, L, H, N, N) attention, or (B, L, N, N) such as a head-averaged
            rollout (read as H = 1).
        grounding: (B, N, N) bool, text token i grounded to region token j.
        region_mask: (B, N) bool, region positions (r0 included).

    Returns:
        ``hits`` (L, H) long, the correct grounded tokens per layer and head, and
        ``count`` () long, the number of grounded text tokens.
    """
    if attn.dim() == 4:
        attn = attn[:, :, None]  # (B, L, 1, N, N)
    B, L, H, N, _ = attn.shape
    rows, row_mask = compact_positions(grounding.any(-1))  # (B, Q), (B, Q)
    Q = rows.shape[1]
    row_attn = gather_rows(attn, rows)  # (B, L, H, Q, N)
    scores = row_attn.masked_fill(~region_mask[:, None, None, None], float("-inf"))
    predicted = scores.argmax(-1)  # (B, L, H, Q)
    grounded = grounding.gather(1, rows[..., None].expand(B, Q, N))  # (B, Q, N)
    hit = grounded[:, None, None].expand(B, L, H, Q, N).gather(-1, predicted[..., None])
    hit = hit.squeeze(-1) & row_mask[:, None, None]  # (B, L, H, Q)
    return hit.sum(dim=(0, 3)), row_mask.sum()


def grounding_chance(grounding: Tensor, region_mask: Tensor) -> Tensor:
    """The hits that uniform attention over each sample's regions would score, summed.

    A grounded text token hits by chance with probability (its grounded regions) /
    (the sample's regions, r0 included): the baseline of :func:`grounding_hits`,
    whose ``count`` divides it the same way.

    Args:
        grounding: (B, N, N) bool, text token i grounded to region token j.
        region_mask: (B, N) bool, region positions (r0 included).

    Returns:
        () float64, the expected number of correct grounded tokens.
    """
    grounded_regions = grounding.sum(-1).double()  # (B, N), 0 on tokens without grounding
    regions = region_mask.sum(-1, keepdim=True).clamp_min(1).double()  # (B, 1)
    return (grounded_regions / regions).sum()


def grounding_accuracy(attn: Tensor, grounding: Tensor, region_mask: Tensor) -> Tensor:
    """Fraction of grounded text tokens whose attention arg-max over regions is right.

    Args:
        attn: (B, L, H, N, N), or (B, L, N, N) (then H = 1).
        grounding: (B, N, N) bool.
        region_mask: (B, N) bool.

    Returns:
        (L, H) float accuracy; 0 where the batch has no grounded token.
    """
    hits, count = grounding_hits(attn, grounding, region_mask)
    return hits.float() / count.clamp_min(1)


def phrase_grounding_hits(
    attn: Tensor, phrase_mask: Tensor, phrase_regions: Tensor, region_mask: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Zero-shot phrase grounding by each head: is the arg-max of the phrase's attention over
    the candidate regions one of the phrase's regions (Recall@1)?

    A phrase's attention is the mean of its tokens' rows; only phrases with at
    least one token and one region count. The counts add up over batches and
    processes.

    Args:
        attn: (B, L, H, N, N) attention probabilities.
        phrase_mask: (B, P, N) bool, the tokens of each phrase.
        phrase_regions: (B, P, N) bool, the region positions each phrase is grounded to.
        region_mask: (B, N) bool, region positions (r0 included: a pick never falls on it).

    Returns:
        ``hits`` (L, H) long, ``count`` () long, the phrases counted, and ``chance``
        () float64, the hits of a uniform pick among each phrase's candidates, summed.
    """
    candidates = region_mask & (region_mask.cumsum(-1) > 1)  # (B, N), every region but r0
    tokens = phrase_mask.to(attn.dtype)  # (B, P, N)
    phrase_attn = torch.einsum("blhnm,bpn->blhpm", attn, tokens)  # (B, L, H, P, N), sums
    scores = phrase_attn.masked_fill(~candidates[:, None, None, None], float("-inf"))
    predicted = scores.argmax(-1)  # (B, L, H, P)
    positives = phrase_regions & candidates[:, None]  # (B, P, N)
    counted = phrase_mask.any(-1) & positives.any(-1)  # (B, P)
    B, L, H, P = predicted.shape
    hit = positives[:, None, None].expand(B, L, H, P, -1).gather(-1, predicted[..., None])
    hit = hit.squeeze(-1) & counted[:, None, None]  # (B, L, H, P)
    chance = positives.sum(-1).double() / candidates.sum(-1, keepdim=True).clamp_min(1)  # (B, P)
    return hit.sum(dim=(0, 3)), counted.sum(), (chance * counted).sum()
