"""RoIAlign (He et al. 2017) with torch operations, as ``torchvision.ops.roi_align`` computes it.

torchvision is not used: PyPI's wheels link torch's CUDA libraries and do not
import beside the CPU build of torch this project installs. This is the same
computation for a fixed ``sampling_ratio`` (torchvision's CPU kernel,
``aligned`` or not), written as two small matrices per box: bilinear sampling
on a grid of points is separable, so each output bin is
``A_y[p] · F · A_xᵀ[q]`` where ``A_y`` (P, H) holds, per output row, the mean
over its sample rows of the bilinear weights on the feature rows (``A_x`` the
same for columns).

Notation: K boxes, C channels, H × W feature map, P × P output bins, S samples
per bin and axis.
"""

from __future__ import annotations

import torch


def _axis_weights(
    start: torch.Tensor, length: torch.Tensor, size: int, bins: int, samples: int
) -> torch.Tensor:
    """``(K, P, size)`` weights of each bin on the feature rows (or columns) along one axis.

    ``start`` and ``length`` (K,) are in feature-map coordinates. Follows
    torchvision's bilinear rule: a sample further than one pixel outside the map
    counts as 0; one in ``[-1, 0)`` is read at 0; at or past the last row, the last row.
    """
    K = start.shape[0]
    step = length / bins  # (K,)
    offsets = torch.arange(bins, dtype=start.dtype, device=start.device)[:, None]  # (P, 1)
    within = (torch.arange(samples, dtype=start.dtype, device=start.device) + 0.5) / samples  # (S,)
    points = start[:, None, None] + (offsets + within)[None] * step[:, None, None]  # (K, P, S)
    valid = (points >= -1.0) & (points <= size)
    points = points.clamp(min=0.0)
    low = points.floor().clamp(max=size - 1)
    last = low >= size - 1
    high = torch.where(last, low, low + 1)
    frac = torch.where(last, torch.zeros_like(points), points - low)
    weight = valid.to(points.dtype) / samples  # (K, P, S): the mean over the bin's samples
    out = torch.zeros(K, bins, size, dtype=start.dtype, device=start.device)
    out.scatter_add_(2, low.long(), weight * (1 - frac))
    out.scatter_add_(2, high.long(), weight * frac)
    return out


def roi_align(
    features: torch.Tensor,
    boxes: list[torch.Tensor],
    output_size: int,
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> torch.Tensor:
    """Pools ``features`` over each box into ``output_size`` × ``output_size`` bins.

    Args:
        features: ``(B, C, H, W)`` feature maps.
        boxes: per image of the batch, ``(K_b, 4)`` boxes ``x1 y1 x2 y2`` in input
            pixels (torchvision's list form).
        output_size: P, bins per side.
        spatial_scale: feature-map cells per input pixel (1 / stride).
        sampling_ratio: S, sample points per bin and axis (a positive integer; torchvision's
            adaptive choice, 0, is not supported).
        aligned: shift boxes by half a cell so that a pixel's centre lies at its
            cell's centre (Detectron2's choice); otherwise torchvision's legacy rule,
            which also makes every box at least one cell wide.

    Returns:
        ``(sum K_b, C, P, P)``, boxes in order.
    """
    B, C, H, W = features.shape
    if len(boxes) != B:
        raise ValueError(f"{len(boxes)} lists of boxes for a batch of {B} feature maps")
    if sampling_ratio < 1:
        raise ValueError(f"sampling_ratio must be a positive integer, got {sampling_ratio}")
    outputs = []
    for b, own in enumerate(boxes):
        own = own.to(features.dtype).reshape(-1, 4) * spatial_scale - (0.5 if aligned else 0.0)
        x1, y1, x2, y2 = own.unbind(1)  # (K,) each
        width, height = x2 - x1, y2 - y1
        if not aligned:
            width, height = width.clamp(min=1.0), height.clamp(min=1.0)
        rows = _axis_weights(y1, height, H, output_size, sampling_ratio)  # (K, P, H)
        cols = _axis_weights(x1, width, W, output_size, sampling_ratio)  # (K, P, W)
        # (K, P, H) · (C, H, W) · (K, P, W) -> (K, C, P, P)
        outputs.append(torch.einsum("kph,chw,kqw->kcpq", rows, features[b], cols))
    if not outputs:
        return features.new_zeros(0, C, output_size, output_size)
    return torch.cat(outputs)
