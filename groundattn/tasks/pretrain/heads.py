"""Prediction heads and loss helpers shared by the pretraining and downstream tasks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.activations import ACT2FN

from groundattn.model import EncoderConfig


class PredictionTransform(nn.Module):
    """BERT's prediction-head transform: dense, activation, LayerNorm (D → D)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class MaskedLMHead(nn.Module):
    """Transform, then the word embeddings as decoder (tied, as BERT's), plus a bias.

    The decoder weight is passed in at call time rather than held, so the tied
    matrix is stored once, under the encoder's name.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.transform = PredictionTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, states: Tensor, word_embeddings: Tensor) -> Tensor:
        """(M, D) states, (V, D) embedding matrix → (M, V) logits."""
        return F.linear(self.transform(states), word_embeddings, self.bias)


def masked_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of (M, C) logits against (M,) labels; 0 (with a graph) when M is 0."""
    if not len(labels):
        return logits.sum() * 0
    return F.cross_entropy(logits.float(), labels)
