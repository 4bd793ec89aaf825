"""How distinct a sample's tokens of one kind stay from layer to layer (analysis, beyond the paper).

For the tokens a mask selects in one sample (its candidate regions, its text),
the *spread* is their mean distance to their centroid over the centroid's norm:
``mean_i ‖h_i − h̄‖ / ‖h̄‖``. Words differ as much as their embeddings do and
keep a spread above 1 through a BERT; region tokens that drift towards one
another lose what tells them apart, and with it what attention from a word
could pick. Counted per layer (embeddings first) as sums over samples.

Shapes: B batch, N sequence, D hidden, L + 1 states (embeddings, then each layer).
"""

from __future__ import annotations

import torch
from torch import Tensor


def token_spread(states: tuple[Tensor, ...] | list[Tensor], mask: Tensor) -> tuple[Tensor, Tensor]:
    """Sums over samples of the spread of the masked tokens, per state.

    Args:
        states: L + 1 tensors (B, N, D), e.g. ``EncoderOutput.hidden_states``.
        mask: (B, N) bool, the tokens compared within each sample.

    Returns:
        ``sums`` (L + 1,) float64 and ``samples`` () long: the samples with at
        least two such tokens (the others have no spread and count nowhere).
    """
    weights = mask.unsqueeze(-1).to(states[0].dtype)  # (B, N, 1)
    count = weights.sum(1)  # (B, 1)
    kept = count[:, 0] >= 2  # (B,)
    sums = []
    for h in states:
        centroid = (h * weights).sum(1) / count.clamp_min(1)  # (B, D)
        distance = (h - centroid[:, None]).norm(dim=-1) * weights[..., 0]  # (B, N)
        spread = distance.sum(1) / count[:, 0].clamp_min(1) / centroid.norm(dim=-1).clamp_min(1e-12)
        sums.append(spread[kept].double().sum())
    return torch.stack(sums), kept.sum()
