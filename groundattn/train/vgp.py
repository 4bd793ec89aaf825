"""The VGP fine-tuning run (METHOD §3): from a config to a trained, evaluated model."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
import yaml

from groundattn.config import ConfigError, VGPConfig
from groundattn.data.store import FeatureStore
from groundattn.model import load_tokenizer
from groundattn.tasks.vgp import (
    SupervisionSpec,
    VGPDataset,
    VGPTask,
    collate_vgp,
    most_grounded_heads,
    summarize,
)
from groundattn.train.checkpoint import latest_checkpoint, save_model
from groundattn.train.models import build_encoder
from groundattn.train.trainer import TrainData, Trainer, make_accelerator

log = logging.getLogger(__name__)


def check_paths(config: VGPConfig, out_dir: Path, resume: bool) -> None:
    """Stops a run that cannot work before any work is done."""
    root = config.data.root
    if not root.is_dir():
        raise ConfigError(f"data.root: directory {root} does not exist (run `groundattn prepare scenes --out {root}`?)")
    for split, field in ((config.data.train_split, "data.train_split"), (config.data.val_split, "data.val_split")):
        for path in (root / f"{split}.txt", root / "features" / f"{split}.h5"):
            if not path.is_file():
                raise ConfigError(f"{field}: {path} does not exist")
    for field in ("bert", "vlbert_checkpoint", "init"):
        value = getattr(config.model, field)
        if value and not Path(value).exists():
            raise ConfigError(f"model.{field}: {value} does not exist")
    if not resume and latest_checkpoint(out_dir) is not None:
        raise ConfigError(f"{out_dir} already holds checkpoints: pass --resume to continue, or choose another --out")


def head_mask(config: VGPConfig, layers: int, heads: int) -> torch.Tensor | None:
    """(L, H) bool of the supervised heads from ``supervision.layers``/``heads``."""
    sup = config.supervision
    if sup.layers is None and sup.heads is None:
        return None
    for name, chosen, size in (("layers", sup.layers, layers), ("heads", sup.heads, heads)):
        if chosen is not None and any(not 0 <= i < size for i in chosen):
            raise ConfigError(f"supervision.{name}: values must lie in 0..{size - 1}, got {chosen}")
    mask = torch.zeros(layers, heads, dtype=torch.bool)
    mask[torch.tensor(sup.layers if sup.layers is not None else range(layers))[:, None], torch.tensor(sup.heads if sup.heads is not None else range(heads))] = True
    return mask


def run_vgp(config: VGPConfig, out_dir: str | Path, *, resume: bool = False) -> dict:
    """Trains and evaluates; writes checkpoints, logs, ``summary.json`` and ``model/``."""
    out_dir = Path(out_dir)
    check_paths(config, out_dir, resume)
    accelerator = make_accelerator(config.run, config.optim.grad_accum)
    out_dir.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        (out_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    data = config.data
    tokenizer = load_tokenizer(config.model.bert)
    with accelerator.main_process_first():
        datasets = {
            split: VGPDataset(
                data.root, split, tokenizer, max_caption_tokens=data.max_caption_tokens, negatives=data.negatives,
                seed=config.run.seed, max_images=data.max_val_images if split == data.val_split else None,
            )
            for split in (data.train_split, data.val_split)
        }
    with FeatureStore(data.root / "features" / f"{data.train_split}.h5") as store:
        feature_dim = store.feature_dim
    torch.manual_seed(config.run.seed)
    encoder = build_encoder(config.model, feature_dim)
    sup = config.supervision
    spec = SupervisionSpec(sup.method, sup.weight, sup.variant, sup.normalization, sup.per_head)
    L, H = encoder.config.num_hidden_layers, encoder.config.num_attention_heads
    task = VGPTask(encoder, spec, head_mask(config, L, H))
    trainer = Trainer(
        task,
        TrainData(datasets[data.train_split], datasets[data.val_split], collate_vgp, summarize, data.num_workers),
        config.optim, config.run, out_dir, config=config.model_dump(mode="json"), accelerator=accelerator,
    )
    started = time.perf_counter()
    if not (resume and trainer.resume()):
        before = trainer.evaluate()
        trainer.history.append({"step": 0, **before})
        log.info("before fine-tuning: %s", before)
    if sup.top_k_heads:
        accuracy = _accuracy_table(trainer.history[0], L, H)
        accelerator.unwrap_model(trainer.module).head_mask.copy_(most_grounded_heads(accuracy, sup.top_k_heads))
    state = trainer.fit()
    after = trainer.evaluate()
    summary = {
        "method": sup.method,
        "steps": state["step"],
        "seconds": round(time.perf_counter() - started, 1),
        "before": trainer.history[0],
        "after": after,
        "history": trainer.history,
    }
    if accelerator.is_main_process:
        save_model(out_dir / "model", accelerator.unwrap_model(trainer.module), config.model_dump(mode="json"))
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _accuracy_table(metrics: dict, layers: int, heads: int) -> torch.Tensor:
    table = metrics.get("grounding_per_head")
    if table is None:
        raise ConfigError("supervision.top_k_heads: the validation gave no per-head grounding accuracy")
    return torch.tensor(table).view(layers, heads)
