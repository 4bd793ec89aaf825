"""Helpers of the visualisation tests: attention that looks from a phrase at
chosen regions, and a reader of the parameters bertviz embeds in a page."""

import json

import torch

BACKGROUND = (128, 128, 128)


def phrase_attention(region_weights: list[float], *, L: int = 1, H: int = 1) -> torch.Tensor:
    """(L, H, N, N) attention of a sample ``[CLS] w1 w2 [SEP] r0 … rK [END]``
    whose phrase tokens w1, w2 (positions 1, 2) give the regions (positions
    4 …) the given weights; every other row is uniform."""
    T, R = 4, len(region_weights)
    N = T + R + 1
    attention = torch.full((L, H, N, N), 1.0 / N)
    row = torch.full((N,), 0.0)
    row[T : T + R] = torch.tensor(region_weights)
    row[0] = 1.0 - row.sum()  # the rest goes to [CLS]
    attention[..., 1, :] = row
    attention[..., 2, :] = row
    return attention


def embedded_params(page: str) -> dict:
    """The parameters bertviz embeds in a page, as a dictionary."""
    prefix = "const params = "
    line = next(line.strip() for line in page.splitlines() if line.strip().startswith(prefix))
    return json.loads(line[len(prefix) :].removesuffix(";"))
