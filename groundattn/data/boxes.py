"""Box conversions and IoU, for numpy arrays and torch tensors alike.

Convention of the whole package: a box is ``x1 y1 x2 y2`` in continuous pixel
coordinates, the image spanning ``[0, width] × [0, height]``; pixel ``i`` (0-based)
covers ``[i, i + 1)``. So ``area = (x2 - x1) * (y2 - y1)`` with no ``+ 1``, and
``xywh`` (COCO's ``[x, y, w, h]``) converts by ``x2 = x + w``. A box with
``x2 <= x1`` or ``y2 <= y1`` is degenerate: its area is 0 and its IoU with
anything is 0.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Boxes = TypeVar("Boxes", np.ndarray, torch.Tensor)


def _as_float(boxes: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    if isinstance(boxes, torch.Tensor):
        return boxes if boxes.is_floating_point() else boxes.float()
    boxes = np.asarray(boxes)
    return boxes if np.issubdtype(boxes.dtype, np.floating) else boxes.astype(np.float32)


def _check_last_dim(boxes: np.ndarray | torch.Tensor) -> None:
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have a last dimension of 4, got shape {tuple(boxes.shape)}")


def xywh_to_xyxy(boxes: Boxes) -> Boxes:
    """Converts ``(..., 4)`` boxes from ``x y w h`` to ``x1 y1 x2 y2`` (a new array)."""
    boxes = _as_float(boxes)
    _check_last_dim(boxes)
    out = boxes.clone() if isinstance(boxes, torch.Tensor) else boxes.copy()
    out[..., 2:] = boxes[..., :2] + boxes[..., 2:]
    return out


def xyxy_to_xywh(boxes: Boxes) -> Boxes:
    """Converts ``(..., 4)`` boxes from ``x1 y1 x2 y2`` to ``x y w h`` (a new array)."""
    boxes = _as_float(boxes)
    _check_last_dim(boxes)
    out = boxes.clone() if isinstance(boxes, torch.Tensor) else boxes.copy()
    out[..., 2:] = boxes[..., 2:] - boxes[..., :2]
    return out


def normalize_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """``(..., 4)`` pixel boxes divided by the image's width and height, clipped to [0, 1]."""
    scale = np.array([width, height, width, height], np.float32)
    return np.clip(boxes / scale, 0.0, 1.0)


def _area(boxes: torch.Tensor) -> torch.Tensor:
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)  # (..., 2)
    return wh[..., 0] * wh[..., 1]


def box_area(boxes: Boxes) -> Boxes:
    """Areas of ``(..., 4)`` ``x1 y1 x2 y2`` boxes; degenerate boxes have area 0."""
    if isinstance(boxes, torch.Tensor):
        return _area(_as_float(boxes))
    return _area(torch.from_numpy(np.ascontiguousarray(_as_float(boxes)))).numpy()


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (N, M, 2)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    union = _area(a)[:, None] + _area(b)[None, :] - inter  # (N, M)
    # union is 0 only when both boxes are degenerate; inter is then 0 too.
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)


def box_iou(a: Boxes, b: Boxes) -> Boxes:
    """Pairwise IoU of two sets of ``x1 y1 x2 y2`` boxes.

    Args:
        a: ``(N, 4)`` boxes, numpy array or torch tensor.
        b: ``(M, 4)`` boxes, numpy array or torch tensor.

    Returns:
        ``(N, M)`` IoU in ``[0, 1]``: a torch tensor if either input is one (on its
        device), else a numpy array. Degenerate boxes give 0, never NaN.
    """
    numpy_out = not (isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor))
    a_t, b_t = (
        x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(_as_float(x)))
        for x in (a, b)
    )
    dtype = torch.promote_types(a_t.dtype, b_t.dtype)
    dtype = dtype if dtype.is_floating_point else torch.float32
    device = a_t.device if isinstance(a, torch.Tensor) else b_t.device
    a_t, b_t = a_t.to(device, dtype), b_t.to(device, dtype)
    for name, boxes in (("a", a_t), ("b", b_t)):
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"box_iou: {name} must be (K, 4), got {tuple(boxes.shape)}")
    iou = _iou(a_t, b_t)  # (N, M)
    return iou.numpy() if numpy_out else iou


def bad_box(boxes: np.ndarray, width: float, height: float, slack: float = 1.0) -> str | None:
    """What is wrong with the first box of ``boxes`` (K, 4) that is no box of the image, or None.

    A box must be finite, have ``x2 > x1`` and ``y2 > y1``, and lie in
    ``[0, width] × [0, height]`` up to ``slack`` pixels (detectors round outwards).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        if not np.isfinite([x1, y1, x2, y2]).all():
            return f"box {k} [{x1:g}, {y1:g}, {x2:g}, {y2:g}] is not finite"
        if x2 <= x1 or y2 <= y1:
            return f"box {k} [{x1:g}, {y1:g}, {x2:g}, {y2:g}] has x2 <= x1 or y2 <= y1"
        if min(x1, y1) < -slack or x2 > width + slack or y2 > height + slack:
            return (
                f"box {k} [{x1:g}, {y1:g}, {x2:g}, {y2:g}] lies outside the "
                f"{width:g} × {height:g} image"
            )
    return None
