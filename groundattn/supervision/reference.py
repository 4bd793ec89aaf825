"""The direct-supervision formulas of the authors' released code (METHOD §6).

Offered as ``variant="reference"`` for reproduction only. The formulas are
kept exactly (ε, both normalisations, the binary cross-entropy of image → text
and its denominators); the defects are not: text and region positions come
from each sample's own masks (defect 1) and nothing loops over samples
(defect 4).

The grounded text rows and the grounded region rows are gathered in one block
each, so that each direction only computes what it reads: the grounded column
of a text row, every text column of a region row.

Shapes: B batch, L layers, H heads, N sequence; Qt grounded text tokens and
Qr grounded regions per sample (padded to the batch maximum).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from groundattn.supervision.rows import (
    SupervisionLoss,
    compact_positions,
    gather_rows,
    mean_over_rows,
)

EPS = 1e-6


def reference_direct_loss(
    attn: Tensor, grounding: Tensor, text_mask: Tensor, region_mask: Tensor, normalization: str
) -> SupervisionLoss:
    """The authors' direct loss.

    text → image: ``log(ε + a / (Σ_R a + ε))`` (``"linear"``) or ``log_softmax`` over R
    of the probabilities themselves (``"softmax"``); the NLL of the grounded region,
    summed and divided by (grounded text tokens of the batch × L × H).

    image → text: the same normalisation over every text position, then
    ``binary_cross_entropy_with_logits`` with the normalised log-attention as logits and
    the multi-hot grounded tokens as target; summed over layers, heads, grounded regions
    and text columns, divided by the sample's number of text tokens, summed over
    samples and divided by (grounded regions of the batch × L × H).

    Args:
        attn: (B, L, H, N, N) attention probabilities, padding columns 0.
        grounding: (B, N, N) bool, text token i grounded to region token j.
        text_mask: (B, N) bool, text positions W ([CLS]/[SEP] included).
        region_mask: (B, N) bool, region positions R (r0 included).
        normalization: ``"linear"`` or ``"softmax"``.

    Returns:
        A :class:`~groundattn.supervision.rows.SupervisionLoss`.

    Raises:
        ValueError: a text token is grounded to several regions (the released code
            takes one region index per token).
    """
    if bool((grounding.sum(-1) > 1).any()):
        raise ValueError(
            "variant='reference' needs one region per grounded text token; "
            "use variant='paper' for entities with several boxes"
        )
    B, L, H, N, _ = attn.shape
    text_rows, text_valid = compact_positions(grounding.any(-1))  # (B, Qt)
    region_rows, region_valid = compact_positions(grounding.any(-2))  # (B, Qr)
    Qt, Qr = text_rows.shape[1], region_rows.shape[1]
    row_attn = gather_rows(attn, torch.cat([text_rows, region_rows], 1))  # (B, L, H, Qt+Qr, N)
    text_attn, region_attn = row_attn.split([Qt, Qr], dim=3)  # (B, L, H, Qt|Qr, N)

    # text → image: NLL of the one grounded region of each grounded token.
    regions_of_text = grounding.gather(1, text_rows[..., None].expand(B, Qt, N))  # (B, Qt, N)
    region_index = regions_of_text.to(torch.uint8).argmax(-1)  # (B, Qt)
    index = region_index[:, None, None, :, None].expand(B, L, H, Qt, 1)  # (B, L, H, Qt, 1)
    grounded_attn = text_attn.gather(-1, index)  # (B, L, H, Qt, 1)
    nll = -_log_normalised(grounded_attn, text_attn, region_mask, normalization).squeeze(-1)
    txt2img = mean_over_rows(nll, text_valid)  # over (B, L, H, Qt)

    # image → text: BCE over every text column, against the tokens grounded to the region.
    index = region_rows[..., None].expand(B, Qr, N)  # (B, Qr, N)
    texts_of_region = grounding.transpose(1, 2).gather(1, index)  # (B, Qr, N): multi-hot
    logits = _log_normalised(region_attn, region_attn, text_mask, normalization)  # (B, L, H, Qr, N)
    target = texts_of_region[:, None, None].to(logits.dtype).expand_as(logits)  # (B, L, H, Qr, N)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = (bce * text_mask[:, None, None, None]).sum(-1)  # (B, L, H, Qr): over text columns
    n_text = text_mask.sum(-1).clamp_min(1)  # (B,)
    img2txt = mean_over_rows(bce / n_text[:, None, None, None], region_valid)
    return SupervisionLoss(txt2img, img2txt, text_valid.sum(), region_valid.sum())


def _log_normalised(
    values: Tensor, row_attn: Tensor, columns: Tensor, normalization: str
) -> Tensor:
    """The authors' normalised log-attention of some entries of ``row_attn``'s rows.

    Args:
        values: (B, L, H, Q, K) probabilities taken from the rows of ``row_attn``.
        row_attn: (B, L, H, Q, N) the rows they come from.
        columns: (B, N) bool, the columns the rows are normalised over.
        normalization: ``"linear"``: ``log(ε + a / (Σ a + ε))``; ``"softmax"``:
            ``log_softmax`` over the columns of the probabilities themselves.

    Returns:
        (B, L, H, Q, K).
    """
    keep = columns[:, None, None, None]  # (B, 1, 1, 1, N)
    if normalization == "linear":
        row_sum = (row_attn * keep).sum(-1, keepdim=True)  # (B, L, H, Q, 1)
        return torch.log(EPS + values / (row_sum + EPS))
    fill = torch.finfo(row_attn.dtype).min  # not -inf: a padding row stays finite
    log_norm = row_attn.masked_fill(~keep, fill).logsumexp(-1, keepdim=True)  # (B, L, H, Q, 1)
    return values - log_norm
