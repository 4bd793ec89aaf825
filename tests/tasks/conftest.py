"""Fixtures of the task tests: the default tokenizer and a tiny encoder."""

import pytest

from groundattn.data.extractor import FEATURE_DIM  # the embedded scenes' region features
from groundattn.model import VLEncoder, load_tokenizer, preset


@pytest.fixture(scope="session")
def tokenizer():
    """MiniLM-L6's fast tokenizer (bert-base-uncased vocabulary)."""
    return load_tokenizer()


@pytest.fixture
def tiny_encoder():
    """A random 2-layer encoder for the embedded scenes' features, without dropout."""
    return VLEncoder(
        preset(
            "tiny",
            visual_feature_dim=FEATURE_DIM,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    )
