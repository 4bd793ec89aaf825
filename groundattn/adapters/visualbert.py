"""The adapter for Hugging Face's ``VisualBertModel``.

What VisualBERT does with a batch (``transformers.models.visual_bert``, read for
transformers 5.x):

- ``VisualBertEmbeddings`` embeds the text (B, T) and the visual embeddings
  (B, R) separately and concatenates them, text first:
  ``torch.cat((embeddings, visual_embeddings), dim=1)``; the attention mask is
  ``torch.cat((attention_mask, visual_attention_mask), dim=-1)`` in the same order.
  So text column t is sequence position t and region column r is T + r, and a
  right-padded text puts its padding *between* a sample's text and its regions.
- Every layer's ``VisualBertSelfAttention`` is an explicit ``softmax(q·k/√d + mask)``
  (VisualBERT has no SDPA path: asking for one raises), and with
  ``output_attentions=True`` each layer returns those probabilities (B, H, N, N)
  over the whole concatenated sequence; padding columns get probability 0,
  padding rows are ordinary rows that no loss reads.
- Those probabilities are taken *after* attention dropout.
  ``config.bypass_transformer=True`` runs the layers over the text alone, and
  the attentions then cover no region at all.

Text and regions follow groundattn's convention: every token of
``attention_mask`` is text, [CLS] and [SEP] included; every token of
``visual_attention_mask`` is a region (a whole-image feature, if the batch has
one, plays the part of r0). Positions are read from the masks, never from the
ids, so left padding works too.

Shapes: B batch, L layers, H heads, T text columns, R region columns, N = T + R.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from groundattn.adapters.base import (
    GroundedSequence,
    SequenceLayout,
    concatenated_layout,
    ground,
)
from groundattn.errors import GroundattnError


class VisualBertAdapter:
    """Grounding, masks and attention of a ``VisualBertModel`` in its sequence positions.

    Typical use::

        adapter = VisualBertAdapter(model)
        seq = adapter.ground(batch, pairs)  # pairs: per sample [(text index, region index)]
        outputs = model(**batch, output_attentions=True)
        attn = adapter.attention(outputs)  # (B, L, H, N, N)
        loss = direct_loss(attn, seq.grounding, seq.text_mask, seq.region_mask).total

    Args:
        model: the ``VisualBertModel`` (or any module whose ``config`` is a
            ``VisualBertConfig``) whose attention is supervised; read to refuse a
            configuration whose attention the losses cannot use.

    Raises:
        GroundattnError: ``config.bypass_transformer`` is set (its layers attend
            over the text alone).
    """

    def __init__(self, model: nn.Module):
        config = model.config
        if getattr(config, "bypass_transformer", False):
            raise GroundattnError(
                "VisualBertAdapter: config.bypass_transformer=True runs the attention layers over "
                "the text alone, so no attention reaches a region; use bypass_transformer=False"
            )
        self.model = model

    def layout(self, batch: Mapping[str, Tensor]) -> SequenceLayout:
        """Text then regions, each block padded on its own (VisualBERT's concatenation).

        Args:
            batch: the model's keyword inputs: ``input_ids`` (B, T) (or ``inputs_embeds``) and
                ``visual_embeds`` (B, R, F), with ``attention_mask`` (B, T) and
                ``visual_attention_mask`` (B, R) where there is padding (absent, every
                column is real, as the model itself assumes).
        """
        text = batch["input_ids"] if "input_ids" in batch else batch["inputs_embeds"][..., 0]
        visual_embeds = batch["visual_embeds"]
        text_valid = batch.get("attention_mask")
        if text_valid is None:
            text_valid = torch.ones(text.shape, dtype=torch.bool, device=text.device)
        region_valid = batch.get("visual_attention_mask")
        if region_valid is None:
            region_valid = torch.ones(
                visual_embeds.shape[:-1], dtype=torch.bool, device=visual_embeds.device
            )
        return concatenated_layout(text_valid.bool(), region_valid.bool())  # N = T + R

    def ground(
        self,
        batch: Mapping[str, Tensor],
        token_region: Tensor | Sequence[Sequence[tuple[int, int]]],
    ) -> GroundedSequence:
        """The batch's grounding and masks in VisualBERT's sequence positions.

        Args:
            batch: as for :meth:`layout`.
            token_region: (B, T, R) bool, ``input_ids[b, t]`` grounded to
                ``visual_embeds[b, r]``, or per-sample (t, r) pairs.
        """
        return ground(self.layout(batch), token_region)

    def attention(self, outputs: Any) -> Tensor:
        """``torch.stack(outputs.attentions, 1)``: (B, L, H, N, N) attention probabilities.

        Raises:
            GroundattnError: the outputs hold no attention (the forward pass was not
                called with ``output_attentions=True``), or the model is training
                with attention dropout: VisualBERT returns the probabilities after
                dropout, where a dropped grounded column is 0 and its direct loss
                ``−log 0`` is clamped to about 87 with no gradient. Set
                ``config.attention_probs_dropout_prob = 0`` to supervise in training.
        """
        attentions = getattr(outputs, "attentions", None)
        if not attentions:
            raise GroundattnError(
                "VisualBertAdapter: the outputs hold no attention; call the model with "
                "output_attentions=True"
            )
        dropout = self.model.config.attention_probs_dropout_prob
        if self.model.training and dropout > 0:
            raise GroundattnError(
                f"VisualBertAdapter: the model is training with attention_probs_dropout_prob="
                f"{dropout}, and VisualBERT returns attention after dropout (dropped columns are "
                "0, a loss on them is meaningless); set config.attention_probs_dropout_prob=0"
            )
        return torch.stack(attentions, dim=1)  # L of (B, H, N, N) -> (B, L, H, N, N)
