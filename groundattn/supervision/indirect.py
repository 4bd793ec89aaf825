"""Indirect attention supervision (METHOD §3, Eq. 5).

A binary classifier ``d([e_phrase, x_region])`` decides, from the final hidden
states, whether a grounded phrase refers to a candidate region; attention is
only shaped through the representations it produces.

Shapes: B batch, P phrases per sample, N sequence, C candidate regions per
sample (padded to the batch maximum), D hidden.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from groundattn.supervision.rows import SupervisionLoss, compact_positions
from groundattn.supervision.spans import max_pool_spans


class IndirectGroundingClassifier(nn.Module):
    """``d([e, x])``: a two-layer MLP on the concatenated phrase and region states.

    ``Linear(2D → D) → GELU → Linear(D → 1)``. A single linear layer would not do:
    its logit ``w_e·e + w_x·x + b`` ranks the regions identically for every phrase.
    The first layer is stored as its two halves (``phrase_proj`` for e,
    ``region_proj`` for x), which is the same map as one ``Linear`` on ``[e, x]`` but
    lets every (phrase, region) pair be scored by broadcasting without
    materialising the concatenation.

    Args:
        hidden_size: D, the size of the encoder's hidden states.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.phrase_proj = nn.Linear(hidden_size, hidden_size)
        self.region_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, phrase: Tensor, region: Tensor) -> Tensor:
        """Logits that the phrase refers to the region.

        Args:
            phrase: (..., D) phrase embeddings e.
            region: (..., D) region states x, broadcastable against ``phrase``
                (e.g. (B, P, 1, D) and (B, 1, C, D) score every pair).

        Returns:
            (...) logits, the broadcast shape of the inputs without D.
        """
        mixed = self.phrase_proj(phrase) + self.region_proj(region)  # (..., D)
        return self.out(F.gelu(mixed)).squeeze(-1)  # (...)


def indirect_loss(
    hidden: Tensor,
    phrase_mask: Tensor,
    phrase_regions: Tensor,
    candidate_mask: Tensor,
    classifier: nn.Module,
) -> SupervisionLoss:
    """Eq. 5: binary cross-entropy of every (grounded phrase, candidate region) pair.

    Per phrase, the BCE (target 1 for its grounded region(s), 0 for the other
    candidates) is averaged over the sample's candidate regions (1/n_r); the result
    is averaged over all phrases of the batch.

    Args:
        hidden: (B, N, D) final hidden states.
        phrase_mask: (B, P, N) bool, exactly the tokens of each grounded phrase; a row
            without a token is a padding phrase.
        phrase_regions: (B, P, N) bool, the positions of each phrase's grounded regions.
        candidate_mask: (B, N) bool, the candidate regions (every region except r0).
        classifier: called as ``classifier(phrase (B, P, 1, D), region (B, 1, C, D))``
            and returning (B, P, C) logits, e.g. :class:`IndirectGroundingClassifier`.

    Returns:
        A :class:`~groundattn.supervision.rows.SupervisionLoss` whose ``txt2img`` is the
        loss, a mean over the batch's phrases (0, attached to the graph, without a
        phrase), and whose ``img2txt`` is 0.
    """
    B, N, D = hidden.shape
    phrase_emb = max_pool_spans(hidden, phrase_mask)  # (B, P, D)
    candidates, candidate_valid = compact_positions(candidate_mask)  # (B, C), (B, C)
    C = candidates.shape[1]
    region_states = hidden.gather(1, candidates[..., None].expand(B, C, D))  # (B, C, D)
    logits = classifier(phrase_emb[:, :, None], region_states[:, None])  # (B, P, C)
    P = phrase_mask.shape[1]
    target = phrase_regions.gather(2, candidates[:, None].expand(B, P, C))  # (B, P, C)
    bce = F.binary_cross_entropy_with_logits(
        logits, target.to(logits.dtype), reduction="none"
    )  # (B, P, C)
    bce = torch.where(candidate_valid[:, None], bce, 0.0)  # (B, P, C)
    n_regions = candidate_valid.sum(-1).clamp_min(1)  # (B,)
    per_phrase = bce.sum(-1) / n_regions[:, None]  # (B, P): Eq. 5, 1/n_r Σ_i
    is_phrase = phrase_mask.any(-1)  # (B, P)
    n_phrases = is_phrase.sum()
    loss = torch.where(is_phrase, per_phrase, 0.0).sum() / n_phrases.clamp_min(1)
    return SupervisionLoss(loss, loss * 0, n_phrases, torch.zeros_like(n_phrases))
