"""Tests of groundattn/supervision/spans.py: max-pooling of phrase spans."""

import torch

from groundattn.supervision import max_pool_spans


def test_max_pool_by_hand_and_padding_span_is_zero():
    hidden = torch.tensor([[[9.0, 9.0], [1.0, -3.0], [0.0, 2.0], [9.0, 9.0]]])  # (1, 4, 2)
    spans = torch.tensor([[[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]]]).bool()  # (1, 3, 4)
    # Span 0 = tokens 1, 2: max([1, −3], [0, 2]) = [1, 2]; span 1 is padding → 0; span 2 = [9, 9].
    expected = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [9.0, 9.0]]])
    torch.testing.assert_close(max_pool_spans(hidden, spans), expected)


def test_gradient_flows_only_to_the_span_maxima():
    hidden = torch.tensor([[[9.0, 9.0], [1.0, -3.0], [0.0, 2.0], [9.0, 9.0]]], requires_grad=True)
    spans = torch.tensor([[[0, 1, 1, 0], [0, 0, 0, 0]]]).bool()
    max_pool_spans(hidden, spans).sum().backward()
    expected = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])
    torch.testing.assert_close(hidden.grad, expected)
