"""Region scoring, shared by the tasks that pick a box for a text (METHOD §7).

Referring expressions and phrase grounding read the same way: each candidate
region's final state (r0 excluded) → a linear score; the loss is binary
cross-entropy with logits, positives being the boxes of IoU ≥ 0.5 with the
target, averaged over the candidate regions of the (global) batch. A sample
is answered by its top-scoring candidates; a top-k pick is correct when one
of them is a positive.

Targets and candidates are (B, N) bool in sequence positions of the packed
:class:`~groundattn.model.VLBatch`.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from groundattn.model import VLBatch, VLEncoder, pack
from groundattn.tasks.common import LossPart, Task, TaskBatch, TaskOutput


@dataclass
class RegionBatch(TaskBatch):
    """A collated batch whose targets are region positions of ``inputs``."""

    inputs: VLBatch
    targets: Tensor  # (B, N) bool: region positions whose box has IoU >= threshold with the target

    @property
    def candidates(self) -> Tensor:
        """(B, N) bool: every region position but r0."""
        return self.inputs.candidate_mask


def collate_regions(samples: list[dict]) -> tuple[VLBatch, Tensor]:
    """Packs samples in the VL-BERT layout and places each region's target at its position.

    A sample holds ``token_ids``, ``features``, ``boxes``, ``targets`` (one bool
    per region, r0 first) and, optionally, ``segment_ids`` (default: all 0).

    Returns:
        The packed inputs and the (B, N) bool targets.
    """
    inputs = pack(
        [s["token_ids"] for s in samples],
        [s.get("segment_ids") or [0] * len(s["token_ids"]) for s in samples],
        [s["features"] for s in samples],
        [s["boxes"] for s in samples],
    )
    targets = torch.zeros_like(inputs.region_mask)
    targets[inputs.region_mask] = torch.tensor(
        [t for s in samples for t in s["targets"]], dtype=torch.bool
    )
    return inputs, targets


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


def top_k_hits(scores: Tensor, targets: Tensor, candidates: Tensor, k: int = 1) -> Tensor:
    """(B,) bool: one of the ``k`` top-scoring candidates is a positive.

    A sample with fewer than ``k`` candidates picks them all; one without any is wrong.
    """
    k = min(k, scores.shape[-1])
    masked = scores.masked_fill(~candidates, float("-inf"))
    best = masked.topk(k, dim=-1).indices  # (B, k)
    # Positions past a sample's candidates come back as -inf picks: never a hit.
    picked = targets.gather(1, best) & candidates.gather(1, best)  # (B, k)
    return picked.any(-1)


def top_region_hits(scores: Tensor, targets: Tensor, candidates: Tensor) -> Tensor:
    """(B,) bool: the top-scoring candidate is a positive (False for a sample without candidates)."""
    return top_k_hits(scores, targets, candidates, 1)


def chance_top_k(targets: Tensor, candidates: Tensor, k: int = 1) -> Tensor:
    """(B,) float64: the probability that ``k`` candidates drawn uniformly (without
    replacement) hold a positive: ``1 - C(n - p, k) / C(n, k)`` for ``p`` positives of ``n``.
    """
    n = candidates.sum(-1).double()  # (B,)
    p = (targets & candidates).sum(-1).double()  # (B,)
    # C(n - p, k) / C(n, k) = prod_{i < k} (n - p - i) / (n - i); a factor <= 0 ends it at 0.
    i = torch.arange(k, dtype=torch.float64, device=n.device)  # (k,)
    factors = ((n - p)[:, None] - i) / (n[:, None] - i).clamp_min(1)  # (B, k)
    miss = factors.clamp_min(0).prod(-1)  # (B,)
    return torch.where(p > 0, 1 - miss, torch.zeros_like(miss))


def chance_hits(targets: Tensor, candidates: Tensor) -> Tensor:
    """(B,) float64: the probability that a candidate drawn uniformly is a positive."""
    return chance_top_k(targets, candidates, 1)


class RegionScorer(Task):
    """A linear score per region over a :class:`VLEncoder`, trained with :func:`region_bce`.

    Subclasses say what validation counts (:meth:`metrics`).
    """

    def __init__(self, encoder: VLEncoder):
        super().__init__()
        self.encoder = encoder
        self.score = nn.Linear(encoder.config.hidden_size, 1)

    def scores(self, batch: RegionBatch) -> Tensor:
        """(B, N) score of every position (read only at candidates)."""
        hidden = self.encoder(batch.inputs).last_hidden_state  # (B, N, D)
        return self.score(hidden)[..., 0]

    @abstractmethod
    def metrics(self, scores: Tensor, batch: RegionBatch) -> dict[str, Tensor]:
        """Validation counts, summed over the batch's samples."""

    def forward(self, batch: RegionBatch) -> TaskOutput:
        """BCE over the candidate regions."""
        return self._output(self.scores(batch), batch)

    def validate(self, batch: RegionBatch) -> tuple[TaskOutput, dict[str, Tensor]]:
        scores = self.scores(batch)
        return self._output(scores, batch), self.metrics(scores, batch)

    def _output(self, scores: Tensor, batch: RegionBatch) -> TaskOutput:
        candidates = batch.candidates
        return TaskOutput(
            {"regions": LossPart(region_bce(scores, batch.targets, candidates), candidates.sum())}
        )
