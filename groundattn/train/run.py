"""The run every task shares: from a config to a trained, evaluated, exported model.

:func:`run` does, for any :class:`Recipe`: check the paths → accelerator → out
dir and ``config.yaml`` → tokenizer → datasets (main process first) → encoder
→ task module → :class:`Trainer` → validation before training → fit →
validation after → the recipe's further evaluations → ``model/`` (weights,
``config.json`` with the task's name, the recipe's extra files) and
``summary.json``. A recipe only says what is particular to its task.

:func:`evaluate` reloads a run's ``model/`` and computes the validation
metrics of any split, on any data root with the same layout.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
import yaml
from pydantic import BaseModel
from torch import Tensor, nn

from groundattn.config import ConfigError
from groundattn.data.store import FeatureStore
from groundattn.errors import ExistingFileError
from groundattn.model import VLEncoder, load_tokenizer
from groundattn.tasks.common import Task, TaskDataset
from groundattn.train.checkpoint import (
    STATE_FILE,
    latest_checkpoint,
    save_model,
    seal_export,
)
from groundattn.train.checkpoint_io import read_json
from groundattn.train.models import FEATURE_PROJECTION, GEOMETRY_PROJECTION, build_encoder
from groundattn.train.trainer import TrainData, Trainer, make_accelerator

log = logging.getLogger(__name__)


class Recipe(ABC):
    """What one task adds to the shared run; subclasses override the hooks they need.

    The config has the sections ``model``, ``data`` (with ``root`` and
    ``num_workers``), ``optim`` and ``run``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[BaseModel]]
    collate: ClassVar[Callable[[list], Any]]
    summarize: ClassVar[Callable[[dict[str, Tensor]], dict[str, float]]]

    def __init__(self, config: BaseModel):
        self.config = config

    # ---- before any work ----------------------------------------------------------------
    def required_paths(self) -> list[tuple[str, Path]]:
        """``(config field, path)`` pairs that must exist for the run to start."""
        return []

    # ---- data and model -------------------------------------------------------------------
    @abstractmethod
    def datasets(self, tokenizer) -> dict[str, TaskDataset]:
        """The training data: ``"train"`` and ``"val"``, and any others :meth:`after_fit` uses."""

    @abstractmethod
    def eval_dataset(self, tokenizer, split: str) -> TaskDataset:
        """The data of one split, for :func:`evaluate`."""

    @abstractmethod
    def train_store(self) -> Path:
        """The feature store of the training data: its feature size and statistics."""

    @abstractmethod
    def build_task(self, encoder: VLEncoder) -> Task:
        """The task module (encoder and heads): ``forward`` trains, ``validate`` counts."""

    # ---- hooks ------------------------------------------------------------------------------
    def summary_head(self) -> dict:
        """The first entries of ``summary.json``."""
        return {"task": self.name}

    def prepare(self, device: torch.device) -> None:  # noqa: B027 (optional hook)
        """Every process, the main one first, once the datasets are built: load or compute
        (and store, on the main process) what :meth:`build_task` needs from other runs."""

    def start(self, out_dir: Path, resume: bool) -> None:  # noqa: B027 (optional hook)
        """Main process, once the datasets are built: write what the run needs to keep."""

    def before_fit(self, trainer: Trainer) -> None:  # noqa: B027 (optional hook)
        """After the validation before training (or the resume), before the first step."""

    def after_fit(
        self, trainer: Trainer, datasets: dict[str, TaskDataset], out_dir: Path, after: dict
    ) -> dict:
        """Every process, after the last validation (``after``): further evaluations, for the summary."""
        return {}

    def export(self, model_dir: Path) -> None:  # noqa: B027 (optional hook)
        """Main process: files besides the weights that :meth:`load_export` reads back."""

    def load_export(self, model_dir: Path) -> None:  # noqa: B027 (optional hook)
        """Reads back what :meth:`export` wrote, before :meth:`build_task`, for evaluation."""

    def after_evaluate(
        self,
        module: nn.Module,
        dataset: TaskDataset,
        split: str,
        out_dir: Path,
        *,
        batch_size: int,
        device: torch.device,
    ) -> dict:
        """Standalone evaluation: anything beyond the counted metrics (predictions files)."""
        return {}


def split_paths(data) -> list[tuple[str, Path]]:
    """The split file and feature store of the training and validation splits of a Flickr30k-style root."""
    return [
        (field, path)
        for split, field in (
            (data.train_split, "data.train_split"),
            (data.val_split, "data.val_split"),
        )
        for path in (data.root / f"{split}.txt", data.root / "features" / f"{split}.h5")
    ]


def check_paths(recipe: Recipe, out_dir: Path, resume: bool) -> None:
    """Stops a run that cannot work before any work is done."""
    config = recipe.config
    root = config.data.root
    if not root.is_dir():
        raise ConfigError(
            f"data.root: directory {root} does not exist (run `groundattn prepare scenes --out {root}`?)"
        )
    for field, path in recipe.required_paths():
        if not path.exists():
            raise ConfigError(f"{field}: {path} does not exist")
    for field in ("bert", "vlbert_checkpoint", "init"):
        value = getattr(config.model, field)
        if value and not Path(value).exists():
            raise ConfigError(f"model.{field}: {value} does not exist")
    last = latest_checkpoint(out_dir)
    finished = [name for name in FINISHED if (out_dir / name).exists()]
    if not resume:
        if finished:
            raise ExistingFileError(
                f"{out_dir} holds a finished run ({', '.join(finished)}); choose another --out"
            )
        if last is not None:
            raise ConfigError(
                f"{out_dir} already holds checkpoints: pass --resume to continue, or choose another --out"
            )
        if (out_dir / METRICS).exists():
            raise ExistingFileError(
                f"{out_dir} already holds a run ({METRICS}); choose another --out"
            )
    elif last is None and finished:
        raise ExistingFileError(
            f"{out_dir} holds a finished run ({', '.join(finished)}) and no checkpoint to "
            "resume from; choose another --out"
        )


# What a finished run leaves in its directory; a fresh run refuses a directory holding it.
FINISHED = ("summary.json", "model")
METRICS = "metrics.jsonl"

# Fields a resumed run may change: they extend the run or change what is logged, not its result.
RESUMABLE_CHANGES = (
    "optim.max_steps",
    "optim.epochs",
    "run.log_every",
    "run.eval_every",
    "run.save_every",
    "run.keep_last",
    "data.num_workers",
)


DATA_REPORT = "data_report.json"


def report_dropped(out_dir: Path, datasets: dict[str, TaskDataset]) -> None:
    """Writes what each split's dataset left out (reason → count) and says so in one line."""
    report = {split: dataset.dropped for split, dataset in datasets.items()}
    (out_dir / DATA_REPORT).write_text(json.dumps(report, indent=2))
    parts = [
        f"{split}: " + ", ".join(f"{count} {reason}" for reason, count in dropped.items())
        for split, dropped in report.items()
        if dropped
    ]
    if parts:
        log.warning("data left out (%s): %s", out_dir / DATA_REPORT, "; ".join(parts))
    else:
        log.info("data: nothing left out (%s)", out_dir / DATA_REPORT)


def free_name(directory: Path, stem: str, suffix: str) -> Path:
    k = 1
    while (directory / f"{stem}-{k}{suffix}").exists():
        k += 1
    return directory / f"{stem}-{k}{suffix}"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    return out


def check_resume(saved: dict, requested: dict, checkpoint: Path) -> dict[str, list]:
    """The allowed changes ``{field: [saved, requested]}`` of a resume; refuses any other.

    Raises:
        ConfigError: listing every field whose change would alter the result.
    """
    old, new = flatten(saved), flatten(requested)
    changed = {
        k: [old.get(k), new.get(k)]
        for k in sorted(old.keys() | new.keys())
        if old.get(k) != new.get(k)
    }
    refused = [k for k in changed if k not in RESUMABLE_CHANGES]
    if refused:
        listed = "; ".join(f"{k}: {changed[k][0]!r} -> {changed[k][1]!r}" for k in refused)
        raise ConfigError(
            f"--resume: the configuration differs from the one of {checkpoint} in fields that "
            f"change the result ({listed}); resume with the same values, or start a new --out"
        )
    return {k: changed[k] for k in changed}


def _standardise_new_projections(encoder: VLEncoder, fresh: set[str], store: FeatureStore) -> None:
    """Sets the statistics of the visual projections that start from scratch from ``store``.

    A text BERT's visual embedding is new; a VL-BERT checkpoint brings its feature
    projection (trained on unstandardised features) but no geometry projection.
    """
    if not {FEATURE_PROJECTION, GEOMETRY_PROJECTION} & fresh:
        return
    stats, visual = store.statistics(), encoder.embeddings.visual
    if FEATURE_PROJECTION in fresh:
        visual.set_feature_statistics(
            torch.from_numpy(stats.feature_mean).float(),
            torch.from_numpy(stats.feature_std).float(),
        )
    if GEOMETRY_PROJECTION in fresh:
        visual.fit_geometry_statistics(torch.from_numpy(stats.boxes))


def run(recipe: Recipe, out_dir: str | Path, *, resume: bool = False) -> dict:
    """Trains and evaluates; writes checkpoints, logs, ``summary.json`` and ``model/``."""
    config, out_dir = recipe.config, Path(out_dir)
    check_paths(recipe, out_dir, resume)
    accelerator = make_accelerator(config.run, config.optim.grad_accum)
    dump = config.model_dump(mode="json")
    identity = {"task": recipe.name, **dump}  # what checkpoints and the export record
    last = latest_checkpoint(out_dir) if resume else None
    changes = check_resume(read_json(last / STATE_FILE)["config"], identity, last) if last else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        if last is None and (out_dir / METRICS).exists():  # a resume with nothing to resume
            kept = free_name(out_dir, "metrics-restarted", ".jsonl")
            (out_dir / METRICS).rename(kept)
            log.info("no checkpoint to resume from: starting again, the earlier log is %s", kept)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(dump, sort_keys=False))
        if changes:
            log.info("resumed with changed fields: %s", changes)
            with open(out_dir / "resumes.jsonl", "a") as f:
                f.write(json.dumps({"checkpoint": str(last), "changed": changes}) + "\n")
    tokenizer = load_tokenizer(config.model.bert)
    with accelerator.main_process_first():
        datasets = recipe.datasets(tokenizer)
        recipe.prepare(accelerator.device)
    if accelerator.is_main_process:
        report_dropped(out_dir, datasets)
        recipe.start(out_dir, resume)
    with FeatureStore(recipe.train_store()) as store:
        torch.manual_seed(config.run.seed)
        encoder, fresh = build_encoder(config.model, store.feature_dim)
        _standardise_new_projections(encoder, fresh, store)
    task = recipe.build_task(encoder)
    # The task's heads are new in every run; the encoder's new parts are what no weights gave.
    new_parameters = {f"encoder.{name}" for name in fresh} | {
        name for name, _ in task.named_parameters() if not name.startswith("encoder.")
    }
    data = TrainData(
        datasets["train"],
        datasets["val"],
        recipe.collate,
        recipe.summarize,
        config.data.num_workers,
    )
    trainer = Trainer(
        task,
        data,
        config.optim,
        config.run,
        out_dir,
        config=identity,
        accelerator=accelerator,
        new_parameters=new_parameters,
    )
    started = time.perf_counter()
    if not (resume and trainer.resume()):
        before = trainer.evaluate()
        trainer.history.append({"step": 0, **before})
        log.info("before training: %s", before)
    recipe.before_fit(trainer)
    state = trainer.fit()
    last = trainer.history[-1] if trainer.history else {}
    if last.get("step") == state["step"]:  # the periodic validation of the last step
        after = {k: v for k, v in last.items() if k != "step"}
    else:
        after = trainer.evaluate()
    extra = recipe.after_fit(trainer, datasets, out_dir, after)
    summary = {
        **recipe.summary_head(),
        "steps": state["step"],
        "seconds": round(time.perf_counter() - started, 1),
        "before": trainer.history[0],
        "after": after,
        "history": trainer.history,
        **extra,
    }
    if accelerator.is_main_process:
        save_model(
            out_dir / "model",
            accelerator.unwrap_model(trainer.module),
            identity,
        )
        recipe.export(out_dir / "model")
        seal_export(out_dir / "model", state["step"])
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    # Every process returns only once the export is complete: what comes next (the
    # experiment's next stage) reads it on every process.
    accelerator.wait_for_everyone()
    return summary
