"""Batch tensors built from per-sample index lists, without loops over tokens.

Samples describe grounding and spans in their own coordinates (text token
index, region slot); these helpers turn them into (B, N, N) and (B, P, N)
masks in sequence positions of a packed :class:`~groundattn.model.VLBatch`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from groundattn.model import VLBatch


def _flatten(per_sample: Sequence[Sequence[Sequence[int]]], width: int) -> Tensor:
    """Per sample lists of ``width``-tuples → (M, 1 + width) long rows ``(b, *tuple)``."""
    rows = [(b, *item) for b, items in enumerate(per_sample) for item in items]
    if not rows:
        return torch.zeros(0, 1 + width, dtype=torch.long)
    return torch.tensor(rows, dtype=torch.long)


def grounding_mask(batch: VLBatch, pairs: Sequence[Sequence[tuple[int, int]]]) -> Tensor:
    """(B, N, N) bool from per-sample ``(text token index, region slot)`` pairs."""
    B, N = batch.input_ids.shape
    grounding = torch.zeros(B, N, N, dtype=torch.bool)
    idx = _flatten(pairs, 2)  # (M, 3): b, i, slot
    if len(idx):
        if (idx[:, 2] >= batch.region_valid.sum(1)[idx[:, 0]]).any():
            raise ValueError("a grounding pair names a region slot the sample does not have")
        j = batch.text_lengths[idx[:, 0]] + idx[:, 2]  # region slot → sequence position
        grounding[idx[:, 0], idx[:, 1], j] = True
    return grounding


def span_mask(batch: VLBatch, spans: Sequence[Sequence[tuple[int, int]]]) -> Tensor:
    """(B, P, N) bool from per-sample text spans ``[start, end)``; P is the batch maximum."""
    B, N = batch.input_ids.shape
    P = max((len(s) for s in spans), default=0)
    mask = torch.zeros(B, P, N, dtype=torch.bool)
    idx = _flatten([[(p, s, e) for p, (s, e) in enumerate(items)] for items in spans], 3)  # (M, 4)
    if len(idx):
        pos = torch.arange(N)
        inside = (pos >= idx[:, 2:3]) & (pos < idx[:, 3:4])  # (M, N)
        mask[idx[:, 0], idx[:, 1]] = inside
    return mask


def slot_mask(batch: VLBatch, slots: Sequence[Sequence[Sequence[int]]], P: int) -> Tensor:
    """(B, P, N) bool marking, for item p of sample b, the positions of its region slots."""
    B, N = batch.input_ids.shape
    mask = torch.zeros(B, P, N, dtype=torch.bool)
    idx = _flatten([[(p, s) for p, item in enumerate(items) for s in item] for items in slots], 2)
    if len(idx):
        mask[idx[:, 0], idx[:, 1], batch.text_lengths[idx[:, 0]] + idx[:, 2]] = True
    return mask


def pad_stack(rows: Sequence[Sequence[Sequence[int]]], width: int, fill: int = -100) -> Tensor:
    """Per-sample lists of ``width``-tuples → (B, K, width) long, padded with ``fill``."""
    K = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), K, width), fill, dtype=torch.long)
    idx = _flatten([[(k, *item) for k, item in enumerate(items)] for items in rows], 1 + width)
    if len(idx):
        out[idx[:, 0], idx[:, 1]] = idx[:, 2:]
    return out
