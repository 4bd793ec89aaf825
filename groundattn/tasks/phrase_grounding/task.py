"""The phrase-grounding task: a score per region, BCE, Recall@1 and Recall@5.

The region scorer and its loss are those of referring expressions
(:mod:`groundattn.tasks.regions`). A phrase is recalled at k when one of the
k top-scoring candidates is a positive; the baseline is the same recall for
k candidates drawn uniformly, without replacement.
"""

from __future__ import annotations

import torch
from torch import Tensor

from groundattn.tasks.phrase_grounding.dataset import PhraseGroundingBatch
from groundattn.tasks.regions import RegionScorer, chance_top_k, top_k_hits

RECALL_AT = (1, 5)


class PhraseGroundingTask(RegionScorer):
    """A region scorer over a :class:`~groundattn.model.VLEncoder`, scored by Recall@k."""

    def metrics(self, scores: Tensor, batch: PhraseGroundingBatch) -> dict[str, Tensor]:
        targets, candidates = batch.targets, batch.candidates
        counts = {
            "answerable": (targets & candidates).any(-1).sum(),
            "phrases": torch.tensor(len(batch), device=scores.device),
        }
        for k in RECALL_AT:
            counts[f"hits_at_{k}"] = top_k_hits(scores, targets, candidates, k).sum()
            counts[f"chance_at_{k}"] = chance_top_k(targets, candidates, k).sum()
        return counts


def summarize(counts: dict[str, Tensor]) -> dict[str, float]:
    """Recall@k over the phrases with a box, its chance level (k uniform picks among the
    candidates), the ceiling (a positive exists) and the count of phrases without one."""
    total = counts["phrases"].clamp_min(1).double()
    metrics = {}
    for k in RECALL_AT:
        metrics[f"recall_at_{k}"] = float(counts[f"hits_at_{k}"] / total)
        metrics[f"recall_at_{k}_baseline"] = float(counts[f"chance_at_{k}"] / total)
    metrics["answerable"] = float(counts["answerable"] / total)
    metrics["phrases"] = int(counts["phrases"])
    metrics["unanswerable_phrases"] = int(counts["phrases"] - counts["answerable"])
    return metrics
