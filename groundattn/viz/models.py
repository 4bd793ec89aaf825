"""The models a visualisation runs: ``--model`` specs, and a run's export loaded for drawing.

A model is a trained run's ``model/`` export (or the run directory holding
one), or :data:`INIT`, the default initialisation. :func:`load_model` gives
the encoder with what the run's config says about its inputs (tokenizer,
caption length, negatives, seed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from groundattn.errors import MissingFileError
from groundattn.eval.saved import load_run
from groundattn.model import VLEncoder, from_pretrained
from groundattn.train.checkpoint_io import read_json
from groundattn.viz.errors import VisualizeError

INIT = "init"
"""Model spec for the default initialisation (MiniLM-L6, new visual parts, seed 0)."""
MAX_CAPTION_TOKENS = 32  # the training default (DataSection.max_caption_tokens)


@dataclass
class LoadedModel:
    """An encoder ready to run, with what its run's config says about its inputs."""

    name: str
    encoder: VLEncoder
    bert: str | None  # tokenizer directory (None: the default MiniLM-L6)
    config: dict = field(default_factory=dict)  # the run's config.json ({} for INIT)
    source: str = INIT


def load_model(
    name: str, model_dir: str | Path | None, feature_dim: int, data_root: str | Path
) -> LoadedModel:
    """The encoder of a run's ``model/`` export (or of a run directory holding one),
    loaded against the data set at ``data_root``; ``None`` gives the default
    initialisation, seeded so that it is reproducible."""
    if model_dir is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            encoder, _ = from_pretrained(visual_feature_dim=feature_dim)
        return LoadedModel(name, encoder.eval(), None)
    directory = Path(model_dir)
    if (
        not (directory / "config.json").is_file()
        and (directory / "model" / "config.json").is_file()
    ):
        directory = directory / "model"
    if not (directory / "config.json").is_file():
        raise MissingFileError(
            f"model {name!r}: {model_dir} has no config.json "
            "(expected a run's model/ directory, or a run directory holding one)"
        )
    config = read_json(directory / "config.json")
    if not isinstance(config.get("model"), dict):
        raise VisualizeError(
            f"{directory / 'config.json'}: no 'model' section (not a run's export)"
        )
    encoder = load_run(directory, data_root).task.encoder
    width = encoder.config.visual_feature_dim
    if width != feature_dim:
        raise VisualizeError(
            f"model {name!r}: {directory} takes region features of width {width}, the feature "
            f"store has width {feature_dim} (use a store made like the one it was trained on)"
        )
    return LoadedModel(name, encoder.eval(), config["model"].get("bert"), config, str(directory))


def parse_model_specs(specs: Sequence[str]) -> dict[str, str | None]:
    """``["none=runs/none", "runs/direct/model", "init"]`` → name → directory (None: INIT).

    A bare directory is named after its run (the parent of ``model/``)."""
    models: dict[str, str | None] = {}
    for spec in specs or [INIT]:
        name, sep, value = spec.partition("=")
        if not sep:
            path = Path(spec)
            name, value = (path.parent.name if path.name == "model" else path.name) or spec, spec
        if not name or name in models:
            raise VisualizeError(f"--model {spec!r}: empty or repeated model name")
        models[name] = None if value == INIT else value
    return models


def folder_name(name: str) -> str:
    """A model's name made safe as a folder or file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "model"
