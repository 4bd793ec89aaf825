"""Encoders of runs: built from a config, initialised from earlier runs, reloaded."""

from __future__ import annotations

import logging
from pathlib import Path

from groundattn.config import ModelSection
from groundattn.model import VLEncoder, from_pretrained, load_vlbert_checkpoint, preset
from groundattn.train.checkpoint import MANIFEST_FILE, MODEL_FILE, CheckpointError, verify_saved
from groundattn.train.checkpoint_io import read_tensors

log = logging.getLogger(__name__)

ENCODER_PREFIX = "encoder."


FEATURE_PROJECTION = "embeddings.visual.feature_projection.weight"  # (hidden, feature width)
GEOMETRY_PROJECTION = "embeddings.visual.geometry_projection.weight"  # (hidden, 6)


def build_encoder(model: ModelSection, feature_dim: int) -> tuple[VLEncoder, set[str]]:
    """The encoder a config asks for, sized for ``feature_dim`` region features.

    Returns it with the names of the parameters and buffers that no weights
    gave (the visual embedding of a text BERT; everything of a random preset;
    nothing after ``model.init``): they start from scratch, and the trainer
    gives them ``optim.new_lr``.
    """
    overrides = {"visual_feature_dim": feature_dim}
    if model.dropout is not None:
        overrides.update(
            hidden_dropout_prob=model.dropout, attention_probs_dropout_prob=model.dropout
        )
    if model.preset is not None:
        encoder = VLEncoder(preset(model.preset, **overrides))
        fresh = set(encoder.state_dict())
    else:
        encoder, report = from_pretrained(model.bert, **overrides)
        fresh = set(report.initialized)
    if model.vlbert_checkpoint:
        report = load_vlbert_checkpoint(encoder, model.vlbert_checkpoint)
        fresh -= set(report.loaded)
    if model.init:
        load_encoder_weights(model.init, encoder)
        fresh = set()
    return encoder, fresh


def _weights_file(path: Path) -> Path:
    if path.is_dir():
        verify_saved(path)
        path = path / MODEL_FILE
    elif (path.parent / MANIFEST_FILE).exists():
        verify_saved(path.parent)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    return path


def load_encoder_weights(path: str | Path, encoder: VLEncoder) -> None:
    """Loads the encoder part (``encoder.*``) of a run's weights; task heads are left out.

    ``path`` is a run's ``model/`` export, a checkpoint directory or a
    ``.safetensors`` file. Every encoder parameter must be present.
    """
    file = _weights_file(Path(path))
    state = read_tensors(file)
    own = {k[len(ENCODER_PREFIX) :]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    expected = encoder.state_dict()
    if own.get(FEATURE_PROJECTION) is not None and (
        own[FEATURE_PROJECTION].shape != expected[FEATURE_PROJECTION].shape
    ):
        raise CheckpointError(
            f"{file}: the model takes region features of width {own[FEATURE_PROJECTION].shape[1]}, "
            f"the feature store has width {expected[FEATURE_PROJECTION].shape[1]} (use a store "
            "made like the one the model was trained on, or start without model.init)"
        )
    shapes = [
        f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in own.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if shapes:
        raise CheckpointError(
            f"{file}: weights of another model size: {', '.join(shapes[:3])}"
            f"{'…' if len(shapes) > 3 else ''} (check model.bert / model.preset)"
        )
    missing, unexpected = encoder.load_state_dict(own, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{file}: encoder keys missing {missing[:5]}…, unexpected {unexpected[:5]}…"
        )
    heads = sorted({k.split(".")[0] for k in state if not k.startswith(ENCODER_PREFIX)})
    log.info("%s: encoder loaded; task heads not used here: %s", file, ", ".join(heads) or "none")
