"""What the encoder returns: hidden states, masks and captured attention."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


class AttentionNotCaptured(RuntimeError):
    """Raised when a result is read that the forward pass was not asked for."""


@dataclass(frozen=True)
class AttentionCapture:
    """Attention captured during one forward pass.

    ``row_logits`` are the pre-softmax scores q·k/√d of the rows ``rows``
    against all N columns (padding columns hold finite values: mask them),
    which is all direct supervision needs (METHOD §4). ``probs`` are the full
    attention probabilities, before attention dropout.
    """

    rows: Tensor | None = None  # (B, Q) long
    _row_logits: Tensor | None = None  # (B, L, H, Q, N)
    _probs: Tensor | None = None  # (B, L, H, N, N)

    @property
    def row_logits(self) -> Tensor:
        if self._row_logits is None:
            raise AttentionNotCaptured(
                "attention logits were not captured: call the encoder with attention_rows=(B, Q) positions"
            )
        return self._row_logits

    @property
    def probs(self) -> Tensor:
        if self._probs is None:
            raise AttentionNotCaptured(
                "attention probabilities were not captured: call the encoder with output_attentions=True"
            )
        return self._probs


@dataclass(frozen=True)
class EncoderOutput:
    """Final states, per-layer states on request, masks and attention."""

    last_hidden_state: Tensor  # (B, N, D)
    attention: AttentionCapture
    text_mask: Tensor  # (B, N) bool
    region_mask: Tensor  # (B, N) bool
    valid_mask: Tensor  # (B, N) bool
    _hidden_states: tuple[Tensor, ...] | None = None  # L + 1 of (B, N, D)

    @property
    def hidden_states(self) -> tuple[Tensor, ...]:
        """Embedding output then each layer's output, as Hugging Face returns them."""
        if self._hidden_states is None:
            raise AttentionNotCaptured(
                "hidden states were not kept: call the encoder with output_hidden_states=True"
            )
        return self._hidden_states

    @property
    def padding_mask(self) -> Tensor:
        """(B, N) bool: padding positions."""
        return ~self.valid_mask
