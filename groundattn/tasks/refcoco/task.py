"""The referring-expression task (METHOD §7): a score per region, BCE, top region.

The region scorer and its loss are shared with phrase grounding
(:mod:`groundattn.tasks.regions`); the prediction is the top-scoring
candidate, correct if it is a positive.
"""

from __future__ import annotations

import torch
from torch import Tensor

from groundattn.tasks.refcoco.dataset import RefCOCOBatch
from groundattn.tasks.regions import RegionScorer, chance_hits, top_region_hits


class RefCOCOTask(RegionScorer):
    """A region scorer over a :class:`~groundattn.model.VLEncoder`, scored by its top region."""

    def metrics(self, scores: Tensor, batch: RefCOCOBatch) -> dict[str, Tensor]:
        candidates = batch.candidates
        return {
            "correct": top_region_hits(scores, batch.targets, candidates).sum(),
            "answerable": (batch.targets & candidates).any(-1).sum(),
            "chance": chance_hits(batch.targets, candidates).sum(),
            "sentences": torch.tensor(len(batch), device=scores.device),
        }


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
