"""What VGP fine-tuning holds on to against forgetting: the teacher and the EWC anchor.

Both come from a pretraining run's ``model/`` export (Original), which has the
MLM and MRC heads. :func:`load_pretrained_task` rebuilds it;
:func:`anchor_fisher` returns the diagonal Fisher of the pretraining objective
(MLM + MRC, :mod:`groundattn.tasks.pretrain`) at its weights, estimated once
and stored beside the model:

- ``fisher-<key>.safetensors``: one tensor per encoder parameter (same name
  and shape), F_i = the mean over ``batches`` mini-batches of the squared
  gradient of the batch's pretraining loss (the usual cheap estimate; with a
  batch size of 1 it is the empirical Fisher). The model is in eval mode (no
  dropout); the masking is the pretraining's, drawn with the run's seed.
- ``fisher-<key>.json``, written last: the sha256 of the model's weights it
  belongs to, the settings it was estimated with, and the size and sha256 of
  the tensors file (like a checkpoint's manifest).

``key`` hashes the model's sha256 and the settings, so different settings
live side by side. A stored Fisher is reused only if its manifest names the
same weights and settings and its file matches its sha256; otherwise it is
estimated again (with a warning when a file was there).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from groundattn.config import ConfigError
from groundattn.eval.saved import load_run
from groundattn.model import load_tokenizer
from groundattn.tasks.pretrain import PretrainTask, collate_pretrain
from groundattn.train.checkpoint import MODEL_FILE
from groundattn.train.checkpoint_io import file_sha256, read_tensors, replace_file

log = logging.getLogger(__name__)

FISHER_FORMAT = "groundattn-fisher"


def load_pretrained_task(model_dir: str | Path, data_root: str | Path, what: str):
    """The pretraining task (encoder, MLM and MRC heads) of a run's ``model/`` and its recipe.

    ``data_root`` resolves the region classes (the VGP run's data). ``what``
    names the config field in errors.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ConfigError(
            f"{what}: {model_dir} is not a run's model/ export (no config.json); knowledge "
            "distillation and EWC need a pretraining run's model/ (it has the MLM and MRC heads)"
        )
    saved = load_run(model_dir, data_root)
    if saved.name != "pretrain":
        raise ConfigError(
            f"{what}: {model_dir} is a {saved.name} model; knowledge distillation and EWC need "
            "a pretraining run's model/ (it has the MLM and MRC heads)"
        )
    return saved.task, saved.recipe


def _settings(data_root: Path, split: str, batches: int, batch_size: int, seed: int) -> dict:
    return {
        "data_root": str(Path(data_root).resolve()),
        "split": split,
        "batches": batches,
        "batch_size": batch_size,
        "seed": seed,
    }


def fisher_files(model_dir: Path, model_sha256: str, settings: dict) -> tuple[Path, Path]:
    """The tensors file and manifest of a Fisher of these weights and settings."""
    text = json.dumps({"model": model_sha256, **settings}, sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    return model_dir / f"fisher-{key}.safetensors", model_dir / f"fisher-{key}.json"


def estimate_fisher(
    task: PretrainTask, loader, batches: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Mean squared gradient of the pretraining loss of each encoder parameter over ``batches``."""
    task.to(device).eval()
    params = dict(task.encoder.named_parameters())
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    seen = 0
    for batch in loader:
        if seen == batches:
            break
        task.zero_grad(set_to_none=True)
        loss, _ = task(batch.to(device)).loss()
        loss.backward()
        for name, p in params.items():
            if p.grad is not None:
                fisher[name] += p.grad.detach().float().pow(2)
        seen += 1
    task.zero_grad(set_to_none=True)
    if seen < batches:
        log.warning("Fisher: the data gave %d batches of the %d asked for", seen, batches)
    return {name: (f / max(seen, 1)).cpu() for name, f in fisher.items()}


def _stored(tensors: Path, manifest: Path, model_sha256: str, settings: dict) -> dict | None:
    """The stored Fisher if it verifies against these weights and settings, else None."""
    if not manifest.is_file():
        return None
    try:
        saved = json.loads(manifest.read_text())
        ok = (
            saved.get("format") == FISHER_FORMAT
            and saved.get("model_sha256") == model_sha256
            and saved.get("settings") == settings
            and tensors.is_file()
            and tensors.stat().st_size == saved["size"]
            and file_sha256(tensors) == saved["sha256"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        log.warning("%s does not verify against %s: estimating the Fisher again", tensors, manifest)
        return None
    return read_tensors(tensors)


def anchor_fisher(
    model_dir: str | Path,
    data_root: str | Path,
    *,
    split: str,
    batches: int,
    batch_size: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """The diagonal Fisher at a pretraining run's weights: stored, or estimated and stored.

    Returns encoder parameter name → F (fp32, CPU), unnormalised.
    """
    model_dir = Path(model_dir)
    model_sha256 = file_sha256(model_dir / MODEL_FILE)
    settings = _settings(Path(data_root), split, batches, batch_size, seed)
    tensors, manifest = fisher_files(model_dir, model_sha256, settings)
    stored = _stored(tensors, manifest, model_sha256, settings)
    if stored is not None:
        log.info("EWC: reusing the Fisher of %s (%s)", model_dir, tensors.name)
        return stored
    task, recipe = load_pretrained_task(model_dir, data_root, "ewc (model.init)")
    dataset = recipe.eval_dataset(load_tokenizer(recipe.config.model.bert), split)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=RandomSampler(dataset, generator=generator),
        collate_fn=collate_pretrain,
        drop_last=True,
    )
    log.info(
        "EWC: estimating the Fisher of %s over %d batches of %d", model_dir, batches, batch_size
    )
    fisher = estimate_fisher(task, loader, batches, torch.device(device))
    replace_file(tensors, {name: f.contiguous() for name, f in fisher.items()})
    entry = {
        "format": FISHER_FORMAT,
        "model_sha256": model_sha256,
        "settings": settings,
        "size": tensors.stat().st_size,
        "sha256": file_sha256(tensors),
    }
    replace_file(manifest, json.dumps(entry, indent=2).encode())
    return fisher
