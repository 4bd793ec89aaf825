"""RoIAlign in torch ops against hand-computed values and a per-sample loop reference."""

from __future__ import annotations

import pytest
import torch

from groundattn.data.roi_align import roi_align


def _ramp() -> torch.Tensor:
    """A (1, 1, 4, 4) map whose value at row y, column x is x + 4y."""
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    return (xs + 4 * ys)[None, None]


def _bilinear(f: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """torchvision's CPU bilinear rule at one point of a (C, H, W) map."""
    H, W = f.shape[-2:]
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return torch.zeros(f.shape[0], dtype=f.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= H - 1:
        y_low = y_high = H - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= W - 1:
        x_low = x_high = W - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (
        hy * hx * f[:, y_low, x_low]
        + hy * lx * f[:, y_low, x_high]
        + ly * hx * f[:, y_high, x_low]
        + ly * lx * f[:, y_high, x_high]
    )


def _reference(f, box, P, scale, S, aligned):
    """Loop RoIAlign of one (C, H, W) map over one box: (C, P, P)."""
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (float(v) * scale - offset for v in box)
    w, h = x2 - x1, y2 - y1
    if not aligned:
        w, h = max(w, 1.0), max(h, 1.0)
    bw, bh = w / P, h / P
    out = torch.zeros(f.shape[0], P, P, dtype=f.dtype)
    for p in range(P):
        for q in range(P):
            total = torch.zeros(f.shape[0], dtype=f.dtype)
            for iy in range(S):
                for ix in range(S):
                    y = y1 + p * bh + (iy + 0.5) * bh / S
                    x = x1 + q * bw + (ix + 0.5) * bw / S
                    total = total + _bilinear(f, y, x)
            out[:, p, q] = total / (S * S)
    return out


def test_hand_computed_bins_on_a_linear_map():
    # aligned: the box (1, 1, 3, 3) covers map coordinates 0.5..2.5; with 2 x 2 bins of
    # 2 x 2 samples, the samples of bin (0, 0) are at 0.75 and 1.25 along each axis, so
    # their mean on the linear map x + 4y is the bin centre's value, 1 + 4 * 1.
    out = roi_align(_ramp(), [torch.tensor([[1.0, 1.0, 3.0, 3.0]])], 2, sampling_ratio=2)
    assert out.shape == (1, 1, 2, 2)
    torch.testing.assert_close(out[0, 0], torch.tensor([[5.0, 6.0], [9.0, 10.0]]))
    # one bin over the whole box: the mean of the map over it, 1.5 + 4 * 1.5
    whole = roi_align(_ramp(), [torch.tensor([[1.0, 1.0, 3.0, 3.0]])], 1, sampling_ratio=2)
    torch.testing.assert_close(whole[0, 0], torch.tensor([[7.5]]))


def test_hand_computed_cells_not_aligned():
    # not aligned: the box (0, 0, 2, 2) covers map coordinates 0..2; one bin sampled at
    # 0.5 and 1.5 along each axis: between cells, bilinear halves of 0, 1, 4, 5, ...
    out = roi_align(
        _ramp(), [torch.tensor([[0.0, 0.0, 2.0, 2.0]])], 1, sampling_ratio=2, aligned=False
    )
    torch.testing.assert_close(out[0, 0], torch.tensor([[1.0 + 4.0 * 1.0]]))
    # the box (0, 0, 1, 1) with one sample, at (0.5, 0.5): the mean of the four cells
    # 0, 1, 4, 5 around it, 2.5
    one = roi_align(
        _ramp(), [torch.tensor([[0.0, 0.0, 1.0, 1.0]])], 1, sampling_ratio=1, aligned=False
    )
    torch.testing.assert_close(one[0, 0, 0, 0], _ramp()[0, 0, :2, :2].mean())
    torch.testing.assert_close(one[0, 0, 0, 0], torch.tensor(2.5))


@pytest.mark.parametrize("aligned", [True, False])
def test_matches_a_loop_reference_on_random_boxes(aligned):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64)
    scale = 0.5  # input pixels are twice the map's cells
    boxes = []
    for _ in range(2):
        xy = torch.rand(3, 2, generator=g, dtype=torch.float64) * torch.tensor([14.0, 12.0])
        wh = torch.rand(3, 2, generator=g, dtype=torch.float64) * 8 + 0.5
        boxes.append(torch.cat([xy, xy + wh], 1))
    boxes[1][0] = torch.tensor([-6.0, -4.0, 20.0, 17.0], dtype=torch.float64)  # off the map
    P, S = 3, 2
    out = roi_align(features, boxes, P, spatial_scale=scale, sampling_ratio=S, aligned=aligned)
    assert out.shape == (6, 3, P, P)
    expected = torch.stack(
        [
            _reference(features[b], box, P, scale, S, aligned)
            for b, own in enumerate(boxes)
            for box in own
        ]
    )
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-10)


def test_a_box_reaching_off_the_map_is_finite_and_differs_from_one_inside():
    features = _ramp() + 1.0  # all positive, so zeros from outside samples show
    inside = torch.tensor([[0.5, 0.5, 3.5, 3.5]])
    off = torch.tensor([[-10.0, -10.0, 14.0, 14.0]])
    both = roi_align(features, [torch.cat([inside, off])], 2, sampling_ratio=2)
    assert torch.isfinite(both).all()
    # samples further than one cell outside count as zero: the large box's mean is smaller
    assert float(both[1].mean()) < float(both[0].mean())
    torch.testing.assert_close(
        both[1], _reference(features[0], off[0], 2, 1.0, 2, True), atol=1e-5, rtol=1e-5
    )
    entirely_outside = roi_align(features, [torch.tensor([[20.0, 20.0, 30.0, 30.0]])], 2)
    torch.testing.assert_close(entirely_outside, torch.zeros(1, 1, 2, 2))


def test_gradient_reaches_the_input():
    features = torch.randn(1, 2, 5, 5, requires_grad=True)
    out = roi_align(features, [torch.tensor([[1.0, 1.0, 4.0, 3.0]])], 2)
    out.sum().backward()
    assert features.grad is not None
    assert torch.isfinite(features.grad).all()
    assert features.grad.abs().sum() > 0
    # cells far from the box get no gradient
    assert float(features.grad[0, :, 4, 4].abs().sum()) == 0.0


def test_empty_and_mismatched_inputs():
    features = torch.zeros(2, 4, 3, 3)
    empty = roi_align(features, [torch.zeros(0, 4), torch.zeros(0, 4)], 2)
    assert empty.shape == (0, 4, 2, 2)
    with pytest.raises(ValueError):
        roi_align(features, [torch.zeros(1, 4)], 2)
    with pytest.raises(ValueError):
        roi_align(features, [torch.zeros(1, 4)] * 2, 2, sampling_ratio=0)
