"""The single-stream VL encoder: BERT layers over the VL-BERT layout.

Module and parameter names are those of Hugging Face's ``BertModel``
(``encoder.layer.{i}.attention.self.query`` …) so its weights load as they are.
The main attention runs on ``scaled_dot_product_attention``; attention is
materialised only when asked for (METHOD §4, "exact and cheap").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from transformers.activations import ACT2FN

from groundattn.model.capture import AttentionCapture, EncoderOutput
from groundattn.model.config import EncoderConfig
from groundattn.model.embeddings import VLEmbeddings
from groundattn.model.inputs import VLBatch


class SelfAttention(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        D = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.scale = 1.0 / math.sqrt(config.head_dim)
        self.dropout_p = config.attention_probs_dropout_prob
        self.query = nn.Linear(D, D)
        self.key = nn.Linear(D, D)
        self.value = nn.Linear(D, D)

    def forward(
        self, x: Tensor, key_mask: Tensor, rows: Tensor | None, keep_probs: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Returns the context, the row logits (B, H, Q, N) and the probs (B, H, N, N)."""
        q, k, v = (
            rearrange(p(x), "b n (h d) -> b h n d", h=self.num_heads)
            for p in (self.query, self.key, self.value)
        )
        dropout_p = self.dropout_p if self.training else 0.0
        probs = None
        if keep_probs:
            scores = (q @ k.transpose(-1, -2)) * self.scale  # (B, H, N, N)
            probs = scores.masked_fill(~key_mask, float("-inf")).softmax(-1)
            context = F.dropout(probs, dropout_p, self.training) @ v  # (B, H, N, d)
        else:
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=key_mask, dropout_p=dropout_p
            )
        row_logits = None
        if rows is not None:
            index = rows[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[-1])  # (B, H, Q, d)
            row_logits = (q.gather(2, index) @ k.transpose(-1, -2)) * self.scale  # (B, H, Q, N)
        return rearrange(context, "b h n d -> b n (h d)"), row_logits, probs


class SelfOutput(nn.Module):
    def __init__(self, config: EncoderConfig, in_size: int):
        super().__init__()
        self.dense = nn.Linear(in_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.self = SelfAttention(config)
        self.output = SelfOutput(config, config.hidden_size)


class Intermediate(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.dense(x))


class Layer(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = SelfOutput(config, config.intermediate_size)

    def forward(
        self, x: Tensor, key_mask: Tensor, rows: Tensor | None, keep_probs: bool
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        context, row_logits, probs = self.attention.self(x, key_mask, rows, keep_probs)
        x = self.attention.output(context, x)
        x = self.output(self.intermediate(x), x)
        return x, row_logits, probs


class Encoder(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))


class VLEncoder(nn.Module):
    """Single-stream vision-and-language encoder in the VL-BERT layout.

    Build one with :func:`groundattn.model.from_pretrained` (a text BERT or a
    VL-BERT checkpoint) or directly from an :class:`EncoderConfig` (random
    weights).
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.embeddings = VLEmbeddings(config)
        self.encoder = Encoder(config)
        self.apply(self._init_weights)
        for p in (self.embeddings.image_token_embedding, self.embeddings.end_token_embedding):
            nn.init.normal_(p, std=config.initializer_range)
        self.embeddings.visual.start_at_word_scale(config.initializer_range)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        batch: VLBatch,
        *,
        attention_rows: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> EncoderOutput:
        """Encodes a batch.

        Args:
            batch: the packed inputs (:func:`groundattn.model.pack`).
            attention_rows: (B, Q) long sequence positions; when given, the
                attention logits of these rows against every column are
                returned for each layer and head (``attention.row_logits``,
                (B, L, H, Q, N)) while the main attention stays fused.
            output_attentions: also return the full attention probabilities
                (``attention.probs``, (B, L, H, N, N)); this materialises every
                map and costs memory and time.
            output_hidden_states: also return every layer's states.
        """
        valid = batch.valid_mask  # (B, N)
        if attention_rows is not None and attention_rows.shape[0] != valid.shape[0]:
            raise ValueError(
                f"attention_rows has {attention_rows.shape[0]} rows of samples, the batch {valid.shape[0]}"
            )
        key_mask = valid[:, None, None, :]  # (B, 1, 1, N)
        x = self.embeddings(batch)  # (B, N, D)
        states, row_logits, probs = [x], [], []
        for layer in self.encoder.layer:
            x, layer_row_logits, layer_probs = layer(x, key_mask, attention_rows, output_attentions)
            states.append(x)
            row_logits.append(layer_row_logits)
            probs.append(layer_probs)
        capture = AttentionCapture(
            rows=attention_rows,
            _row_logits=torch.stack(row_logits, 1)
            if attention_rows is not None
            else None,  # (B, L, H, Q, N)
            _probs=torch.stack(probs, 1) if output_attentions else None,  # (B, L, H, N, N)
        )
        return EncoderOutput(
            last_hidden_state=x,
            attention=capture,
            text_mask=batch.text_mask,
            region_mask=batch.region_mask,
            valid_mask=valid,
            _hidden_states=tuple(states) if output_hidden_states else None,
        )
