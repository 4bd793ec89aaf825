"""Synthetic batches in the seamless VL-BERT layout, for tests and benchmarks.

Each sample is ``text (T tokens, [CLS]/[SEP] included) · regions (r0 first) · [END]``
followed by padding up to the longest sample, so text and regions sit at
different positions in different samples.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class Layout(NamedTuple):
    text_mask: Tensor  # (B, N) bool
    region_mask: Tensor  # (B, N) bool, r0 included
    valid_mask: Tensor  # (B, N) bool, text, regions and [END]


def seamless_layout(text_lengths: list[int], region_counts: list[int], pad: int = 0) -> Layout:
    """Masks of a batch: sample b has ``text_lengths[b]`` text tokens then its regions."""
    N = max(t + r + 1 for t, r in zip(text_lengths, region_counts, strict=True)) + pad
    B = len(text_lengths)
    text_mask = torch.zeros(B, N, dtype=torch.bool)
    region_mask = torch.zeros(B, N, dtype=torch.bool)
    valid_mask = torch.zeros(B, N, dtype=torch.bool)
    for b, (t, r) in enumerate(zip(text_lengths, region_counts, strict=True)):
        text_mask[b, :t] = True
        region_mask[b, t : t + r] = True
        valid_mask[b, : t + r + 1] = True
    return Layout(text_mask, region_mask, valid_mask)


def random_attention(valid_mask: Tensor, L: int, H: int, generator=None) -> Tensor:
    """(B, L, H, N, N) softmax probabilities over valid columns; padding rows and columns 0."""
    B, N = valid_mask.shape
    logits = torch.randn(B, L, H, N, N, generator=generator)
    logits = logits.masked_fill(~valid_mask[:, None, None, None, :], float("-inf"))
    probs = logits.softmax(-1)
    return torch.where(valid_mask[:, None, None, :, None], probs, 0.0)


def random_grounding(
    layout: Layout, phrases: int, max_boxes: int = 1, generator=None
) -> tuple[Tensor, Tensor]:
    """Random phrase grounding: ``(grounding (B, N, N), phrase_mask (B, P, N))``.

    Each sample gets up to ``phrases`` disjoint phrases of 1–3 tokens inside its text
    (never [CLS] nor the last [SEP]), each grounded to 1…``max_boxes`` regions other
    than r0.
    """
    B, N = layout.text_mask.shape
    grounding = torch.zeros(B, N, N, dtype=torch.bool)
    phrase_mask = torch.zeros(B, phrases, N, dtype=torch.bool)
    for b in range(B):
        text = layout.text_mask[b].nonzero().flatten().tolist()
        regions = layout.region_mask[b].nonzero().flatten().tolist()[1:]  # without r0
        start = 1
        for p in range(phrases):
            length = int(torch.randint(1, 4, (1,), generator=generator))
            if start + length > len(text) - 1 or not regions:
                break
            n_boxes = int(torch.randint(1, max_boxes + 1, (1,), generator=generator))
            order = torch.randperm(len(regions), generator=generator)[:n_boxes].tolist()
            tokens = text[start : start + length]
            for i in tokens:
                phrase_mask[b, p, i] = True
                for k in order:
                    grounding[b, i, regions[k]] = True
            start += length + int(torch.randint(0, 3, (1,), generator=generator))
    return grounding, phrase_mask
