"""The referring-expression task (METHOD §7): a score per region, BCE, top region.

Each candidate region's final state (r0 excluded) → a linear score; the loss
is binary cross-entropy with logits, positives being boxes of IoU ≥ 0.5 with
the referent, averaged over the candidate regions of the (global) batch. The
prediction is the top-scoring candidate; it is correct if it is a positive.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from groundattn.model import VLEncoder
from groundattn.tasks.common import global_mean
from groundattn.tasks.refcoco.dataset import RefCOCOBatch


def region_bce(scores: Tensor, targets: Tensor, candidates: Tensor) -> Tensor:
    """Mean BCE with logits over the candidate positions; 0 (with a graph) without any.

    Args:
        scores: (B, N) logits. targets: (B, N) bool. candidates: (B, N) bool.
    """
    if not candidates.any():
        return scores.sum() * 0
    return F.binary_cross_entropy_with_logits(
        scores[candidates].float(), targets[candidates].float()
    )


def top_region_hits(scores: Tensor, targets: Tensor, candidates: Tensor) -> Tensor:
    """(B,) bool: the top-scoring candidate is a positive (False for a sample without candidates)."""
    best = scores.masked_fill(~candidates, float("-inf")).argmax(-1, keepdim=True)  # (B, 1)
    return targets.gather(1, best)[:, 0] & candidates.any(-1)


def chance_hits(targets: Tensor, candidates: Tensor) -> Tensor:
    """(B,) float64: the probability that a candidate drawn uniformly is a positive."""
    positives = (targets & candidates).sum(-1).double()  # (B,)
    return positives / candidates.sum(-1).clamp_min(1)


class RefCOCOTask(nn.Module):
    """A region scorer over a :class:`VLEncoder`."""

    def __init__(self, encoder: VLEncoder):
        super().__init__()
        self.encoder = encoder
        self.score = nn.Linear(encoder.config.hidden_size, 1)
        self.sum_over_processes: Callable[[Tensor], Tensor] | None = None

    def scores(self, batch: RefCOCOBatch) -> Tensor:
        """(B, N) score of every position (read only at candidates)."""
        hidden = self.encoder(batch.inputs).last_hidden_state  # (B, N, D)
        return self.score(hidden)[..., 0]

    def forward(
        self, batch: RefCOCOBatch, *, with_metrics: bool = False
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Returns the loss and, detached, its value (and validation counts on request)."""
        scores, candidates = self.scores(batch), batch.candidates
        loss = region_bce(scores, batch.targets, candidates)
        if not with_metrics:  # validation sums over samples itself
            loss = global_mean(loss, candidates.sum(), self.sum_over_processes)
        parts = {"loss": loss.detach()}
        if with_metrics:
            parts["correct"] = top_region_hits(scores, batch.targets, candidates).sum()
            parts["answerable"] = (batch.targets & candidates).any(-1).sum()
            parts["chance"] = chance_hits(batch.targets, candidates).sum()
            parts["sentences"] = torch.tensor(len(batch), device=scores.device)
        return loss, parts


def summarize(counts: dict[str, Tensor]) -> dict[str, float]:
    """Accuracy (top region correct), its chance level (a uniform pick among the
    candidates) and its ceiling (a positive exists) over the sentences."""
    total = counts["sentences"].clamp_min(1).double()
    return {
        "accuracy": float(counts["correct"] / total),
        "accuracy_baseline": float(counts["chance"] / total),
        "answerable": float(counts["answerable"] / total),
        "sentences": int(counts["sentences"]),
    }
