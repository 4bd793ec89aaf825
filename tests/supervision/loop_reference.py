"""Plain per-sample, per-token loop implementations of the supervision losses.

Written for obviousness, not speed: they follow METHOD §3–§6 line by line and
serve as the straightforward peers of the vectorised losses in
``groundattn.supervision`` (tests) and as the baseline of the benchmark.
Layers and heads are handled as tensor dimensions; samples, tokens, regions
and phrases are Python loops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-6


def _positions(mask: Tensor) -> list[int]:
    return mask.nonzero().flatten().tolist()


def _zero(like: Tensor) -> Tensor:
    return like.sum() * 0.0


def _paper_terms(attn: Tensor, grounding: Tensor, text_mask: Tensor, region_mask: Tensor):
    """The (L, H) cross-entropies of one sample's grounded text tokens and regions."""
    text_cols = _positions(text_mask)
    region_cols = _positions(region_mask)
    txt2img, img2txt = [], []
    for i in _positions(grounding.any(1)):
        a = attn[:, :, i, region_cols]  # (L, H, R)
        a_hat = a / a.sum(-1, keepdim=True)
        grounded = [region_cols.index(j) for j in _positions(grounding[i])]
        txt2img.append(-a_hat[:, :, grounded].log().mean(-1))  # uniform over grounded regions
    for j in _positions(grounding.any(0)):
        a = attn[:, :, j, text_cols]  # (L, H, T)
        a_tilde = a / a.sum(-1, keepdim=True)
        grounded = [text_cols.index(i) for i in _positions(grounding[:, j])]
        img2txt.append(-a_tilde[:, :, grounded].log().mean(-1))
    return txt2img, img2txt


def _mean(terms: list[Tensor], like: Tensor) -> Tensor:
    return torch.stack(terms).mean() if terms else _zero(like)


def loop_direct_loss(
    attn: Tensor, grounding: Tensor, text_mask: Tensor, region_mask: Tensor
) -> tuple[Tensor, Tensor]:
    """Paper direct loss (METHOD §4): (txt2img, img2txt)."""
    txt2img, img2txt = [], []
    for b, sample in enumerate(attn.unbind(0)):
        t, r = _paper_terms(sample, grounding[b], text_mask[b], region_mask[b])
        txt2img += t
        img2txt += r
    return _mean(txt2img, attn), _mean(img2txt, attn)


def loop_reference_direct_loss(
    attn: Tensor,
    grounding: Tensor,
    text_mask: Tensor,
    region_mask: Tensor,
    normalization: str = "linear",
) -> tuple[Tensor, Tensor]:
    """The authors' direct loss (METHOD §6) with per-sample positions: (txt2img, img2txt)."""
    B, L, H, _, _ = attn.shape

    def normalise(a: Tensor) -> Tensor:
        if normalization == "linear":
            return torch.log(EPS + a / (a.sum(-1, keepdim=True) + EPS))
        return a.log_softmax(-1)

    nll_terms, bce_terms = [], []
    n_tokens = n_regions = 0
    for b, sample in enumerate(attn.unbind(0)):
        text_cols = _positions(text_mask[b])
        region_cols = _positions(region_mask[b])
        for i in _positions(grounding[b].any(1)):
            (j,) = _positions(grounding[b, i])
            log_a = normalise(sample[:, :, i, region_cols])  # (L, H, R)
            nll_terms.append(-log_a[:, :, region_cols.index(j)].sum())
            n_tokens += 1
        for j in _positions(grounding[b].any(0)):
            log_a = normalise(sample[:, :, j, text_cols])  # (L, H, T)
            target = grounding[b, text_cols, j].float().expand_as(log_a)
            bce = F.binary_cross_entropy_with_logits(log_a, target, reduction="sum")
            bce_terms.append(bce / len(text_cols))
            n_regions += 1
    txt2img = torch.stack(nll_terms).sum() / (n_tokens * L * H) if n_tokens else _zero(attn)
    img2txt = torch.stack(bce_terms).sum() / (n_regions * L * H) if n_regions else _zero(attn)
    return txt2img, img2txt


def loop_rollout(attn: Tensor, per_head: bool = False) -> Tensor:
    """Rollout of one sample with no padding: (L, H, n, n) → (L, H', n, n)."""
    L, H, n, _ = attn.shape
    if not per_head:
        attn = attn.mean(1, keepdim=True)
    rolled = []
    for layer in range(L):
        a_hat = attn[layer] + torch.eye(n)
        a_hat = a_hat / a_hat.sum(-1, keepdim=True)
        rolled.append(a_hat if layer == 0 else a_hat @ rolled[-1])
    return torch.stack(rolled)


def loop_semi_direct_loss(
    attn: Tensor,
    grounding: Tensor,
    text_mask: Tensor,
    region_mask: Tensor,
    valid_mask: Tensor,
    per_head: bool = False,
) -> tuple[Tensor, Tensor]:
    """Paper semi-direct loss (METHOD §5): each sample cut to its valid tokens, rolled out."""
    txt2img, img2txt = [], []
    for b, sample in enumerate(attn.unbind(0)):
        valid = _positions(valid_mask[b])
        sample = sample[:, :, valid][:, :, :, valid]  # (L, H, n, n)
        rolled = loop_rollout(sample, per_head)
        g = grounding[b][valid][:, valid]
        t, r = _paper_terms(rolled, g, text_mask[b, valid], region_mask[b, valid])
        txt2img += t
        img2txt += r
    return _mean(txt2img, attn), _mean(img2txt, attn)


def loop_indirect_loss(
    hidden: Tensor,
    phrase_mask: Tensor,
    phrase_regions: Tensor,
    candidate_mask: Tensor,
    classifier: nn.Module,
) -> Tensor:
    """Eq. 5, one phrase at a time."""
    per_phrase = []
    for b, states in enumerate(hidden.unbind(0)):
        candidates = _positions(candidate_mask[b])
        for p in range(phrase_mask.shape[1]):
            tokens = _positions(phrase_mask[b, p])
            if not tokens:
                continue
            e = states[tokens].max(0).values  # (D,)
            # d([e, x_i]) for every candidate region i at once.
            logits = classifier(e.expand(len(candidates), -1), states[candidates])  # (C,)
            target = phrase_regions[b, p, candidates].float()
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
            per_phrase.append(bce / len(candidates))  # 1/n_r Σ_i (Eq. 5)
    return _mean(per_phrase, hidden)
