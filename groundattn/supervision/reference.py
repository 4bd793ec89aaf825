"""The direct-supervision formulas of the authors' released code (METHOD §6).

Offered as ``variant="reference"`` for reproduction only. The formulas are
kept exactly (ε, normalisations, the binary cross-entropy of image → text and
its denominators); the defects are not: text and region positions come from
each sample's own masks (defect 1) and nothing loops over samples (defect 4).

Shapes: B batch, L layers, H heads, N sequence, Q supervised rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from groundattn.supervision.rows import (
    RowTargets,
    SupervisionLoss,
    gather_targets,
    masked_log_softmax,
    mean_over_rows,
)

EPS = 1e-6


def reference_direct_loss(
    row_attn: Tensor, targets: RowTargets, text_mask: Tensor, normalization: str
) -> SupervisionLoss:
    """The authors' direct loss on the gathered supervised rows.

    text → image: ``log(ε + a / (Σ_R a + ε))`` (``"linear"``) or ``log_softmax`` over R
    of the probabilities themselves (``"softmax"``); the NLL of the grounded region,
    summed and divided by (grounded text tokens of the batch × L × H).

    image → text: the same normalisation over every text position, then
    ``binary_cross_entropy_with_logits`` with the normalised log-attention as logits and
    the multi-hot grounded tokens as target; summed over layers, heads, grounded regions
    and text columns, divided by the sample's number of text tokens, summed over
    samples and divided by (grounded regions of the batch × L × H).

    Args:
        row_attn: (B, L, H, Q, N) attention probabilities of the supervised rows.
        targets: the rows' columns and grounded targets, from
            :func:`~groundattn.supervision.rows.row_targets`.
        text_mask: (B, N) bool, text positions ([CLS]/[SEP] included).
        normalization: ``"linear"`` or ``"softmax"``.

    Returns:
        A :class:`~groundattn.supervision.rows.SupervisionLoss`.

    Raises:
        ValueError: a text token is grounded to several regions (the released code
            takes one region index per token).
    """
    if bool(((targets.target.sum(-1) > 1) & targets.is_text_row).any()):
        raise ValueError(
            "variant='reference' needs one region per grounded text token; "
            "use variant='paper' for entities with several boxes"
        )
    columns = targets.columns[:, None, None]  # (B, 1, 1, Q, N)
    if normalization == "linear":
        row_sum = torch.where(columns, row_attn, 0.0).sum(-1, keepdim=True)  # (B, L, H, Q, 1)
        target_attn, weights = gather_targets(row_attn, targets)  # (B, L, H, Q, K)
        target_log_norm = torch.log(EPS + target_attn / (row_sum + EPS))  # (B, L, H, Q, K)
        # softplus(log(ε + r)) = log(1 + ε + r): the BCE's log-partition without an exp.
        softplus_log_norm = torch.log1p(EPS + row_attn / (row_sum + EPS))  # (B, L, H, Q, N)
    else:
        log_norm = masked_log_softmax(row_attn, targets.columns)  # (B, L, H, Q, N)
        target_log_norm, weights = gather_targets(log_norm, targets)  # (B, L, H, Q, K)
        softplus_log_norm = F.softplus(log_norm)  # (B, L, H, Q, N)
    # Σ over the grounded columns of the normalised log-attention (padding slots masked).
    target_sum = torch.where(weights > 0, target_log_norm, 0.0).sum(-1)  # (B, L, H, Q)

    # text → image: the NLL of the one grounded region.
    txt2img = mean_over_rows(-target_sum, targets.is_text_row)

    # image → text: binary_cross_entropy_with_logits(x, y) = softplus(x) − y·x, summed
    # over the text columns W: Σ_W softplus(x_w) − Σ_{grounded w} x_w.
    bce = torch.where(columns, softplus_log_norm, 0.0).sum(-1) - target_sum  # (B, L, H, Q)
    n_text = text_mask.sum(-1).clamp_min(1)  # (B,)
    img2txt = mean_over_rows(bce / n_text[:, None, None, None], targets.is_region_row)
    return SupervisionLoss(txt2img=txt2img, img2txt=img2txt)
