"""Tests of groundattn/data/boxes.py: conversions and IoU for numpy and torch."""

import numpy as np
import pytest
import torch

from groundattn.data.boxes import box_area, box_iou, xywh_to_xyxy, xyxy_to_xywh

A = [[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]]
B = [[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0], [0.0, 0.0, 5.0, 10.0]]
# Hand-computed: overlap 25 of union 175; touching edges; half of the first box.
EXPECTED = [[1.0, 0.0, 0.5], [25 / 175, 25 / 175, 0.0]]


def test_conversions_round_trip_numpy_and_torch():
    xywh = np.array([[10.5, 20.0, 100.0, 50.25], [0, 0, 1, 2]])
    xyxy = xywh_to_xyxy(xywh)
    np.testing.assert_allclose(xyxy, [[10.5, 20.0, 110.5, 70.25], [0, 0, 1, 2]])
    np.testing.assert_allclose(xyxy_to_xywh(xyxy), xywh)
    assert xywh[0, 2] == 100.0  # the input is not modified
    tensor = xywh_to_xyxy(torch.tensor([[1, 2, 3, 4]]))  # integers become float
    assert tensor.dtype == torch.float32 and tensor.tolist() == [[1.0, 2.0, 4.0, 6.0]]
    with pytest.raises(ValueError, match="last dimension of 4"):
        xywh_to_xyxy(np.zeros((2, 3)))


def test_box_area_continuous_convention():
    np.testing.assert_allclose(box_area(np.array(A + [[5.0, 5.0, 1.0, 9.0]])), [100, 100, 0])


def test_box_iou_numpy_and_torch_agree():
    iou_np = box_iou(np.array(A), np.array(B))
    assert isinstance(iou_np, np.ndarray) and iou_np.shape == (2, 3)
    np.testing.assert_allclose(iou_np, EXPECTED, rtol=1e-6)
    iou_t = box_iou(torch.tensor(A), torch.tensor(B))
    assert isinstance(iou_t, torch.Tensor) and iou_t.dtype == torch.float32
    np.testing.assert_allclose(iou_t.numpy(), EXPECTED, rtol=1e-6)
    mixed = box_iou(torch.tensor(A, dtype=torch.float64), np.array(B))
    assert isinstance(mixed, torch.Tensor) and mixed.dtype == torch.float64


def test_box_iou_degenerate_boxes_give_zero_not_nan():
    degenerate = np.array([[3.0, 3.0, 3.0, 3.0], [5.0, 5.0, 1.0, 1.0]])
    iou = box_iou(degenerate, np.vstack([degenerate, A]))
    assert not np.isnan(iou).any()
    np.testing.assert_array_equal(iou, np.zeros((2, 4)))
    assert box_iou(np.zeros((0, 4)), np.array(A)).shape == (0, 2)


def test_box_iou_shape_errors():
    with pytest.raises(ValueError, match=r"b must be \(K, 4\)"):
        box_iou(np.array(A), np.zeros(4))
