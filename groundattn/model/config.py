"""Encoder configuration: a dataclass with named presets."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class EncoderConfig:
    """Size and regularisation of the single-stream VL encoder (BERT layout)."""

    vocab_size: int = 30522
    """Word-piece vocabulary size."""
    hidden_size: int = 384
    """D, the width of every token state."""
    num_hidden_layers: int = 6
    """L, the number of transformer layers."""
    num_attention_heads: int = 12
    """H, the number of attention heads per layer."""
    intermediate_size: int = 1536
    """Width of each layer's feed-forward block."""
    hidden_act: str = "gelu"
    """Activation of the feed-forward block (as named by Hugging Face)."""
    hidden_dropout_prob: float = 0.1
    """Dropout on embeddings and residual branches."""
    attention_probs_dropout_prob: float = 0.1
    """Dropout on attention probabilities."""
    max_position_embeddings: int = 512
    """Number of learned positions."""
    type_vocab_size: int = 3
    """Segments: 0 for [CLS] c1 [SEP], 1 for c2 [SEP], 2 for regions and [END]."""
    layer_norm_eps: float = 1e-12
    """Epsilon of every LayerNorm."""
    initializer_range: float = 0.02
    """Standard deviation of the normal init of new parameters."""
    visual_feature_dim: int = 2048
    """F, the size of a region feature vector."""
    pad_token_id: int = 0
    """Word-piece id used for padding."""

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.type_vocab_size < 3:
            raise ValueError(
                f"type_vocab_size must be >= 3 (text, text, image), got {self.type_vocab_size}"
            )

    @classmethod
    def from_hf(cls, hf_config: dict[str, Any], **overrides: Any) -> EncoderConfig:
        """Builds a config from a Hugging Face BERT ``config.json`` dictionary.

        The text BERT's two segments become three (METHOD §2).
        """
        if hf_config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only BERT models with absolute position embeddings are supported")
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in hf_config.items() if k in names}
        values["type_vocab_size"] = max(3, int(hf_config.get("type_vocab_size", 2)))
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes: Any) -> EncoderConfig:
        return replace(self, **changes)


PRESETS: dict[str, EncoderConfig] = {
    # Random weights, for tests: hidden <= 64, 2 layers. BERT's init scale of 0.02 suits a
    # width of 768; at width 32 it makes every attention logit nearly 0 and its gradient
    # too (q·k is a product of two small matrices), and the model sits on a plateau for
    # hundreds of steps. 1/sqrt(32) ≈ 0.18 starts it where attention can move at once.
    "tiny": EncoderConfig(
        initializer_range=0.1,
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        visual_feature_dim=16,
    ),
    # The shape of MiniLM-L6-H384 (the default pretrained text BERT).
    "minilm": EncoderConfig(),
}


def preset(name: str, **overrides: Any) -> EncoderConfig:
    """Returns a named preset, optionally with some fields changed."""
    if name not in PRESETS:
        raise ValueError(f"unknown encoder preset {name!r}; accepted: {sorted(PRESETS)}")
    return PRESETS[name].with_(**overrides)
