"""A saved run: its ``model/`` export loaded as the task it was trained for, and evaluated.

:func:`load_run` is the one place that turns a run's export into a model: the
task is read from the export's ``config.json`` (never guessed), the manifest's
hashes are verified and every weight is loaded strictly. ``groundattn
evaluate``, the visualiser and the regularisers' teacher all go through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch.utils.data import DataLoader

from groundattn.config import ConfigError, load_config
from groundattn.errors import MissingFileError
from groundattn.eval.loop import metrics_of, validation_sums
from groundattn.model import load_tokenizer
from groundattn.tasks.common import Task, TaskDataset
from groundattn.train.checkpoint import CONFIG_FILE, MODEL_FILE, load_model_weights, verify_saved
from groundattn.train.checkpoint_io import read_json
from groundattn.train.models import FEATURE_PROJECTION, build_encoder
from groundattn.train.registry import recipe_class
from groundattn.train.run import Recipe, free_name

ENCODER_FEATURES = f"encoder.{FEATURE_PROJECTION}"  # (hidden, feature width) in an export


@dataclass
class SavedRun:
    """A run's export: the recipe it was trained with and its task, weights loaded."""

    directory: Path
    recipe: Recipe
    task: Task

    @property
    def name(self) -> str:
        """The task's registry name (``vgp``, ``vqa``…)."""
        return self.recipe.name


def load_run(
    model_dir: str | Path,
    data_root: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    task: str | None = None,
) -> SavedRun:
    """The run whose ``model/`` export is ``model_dir``, pointed at ``data_root``.

    Args:
        model_dir: a run's ``model/`` export.
        data_root: the data set its recipe reads (default: the one it was trained on).
        overrides: dotted ``key=value`` config changes (``data.boxes=ground_truth``).
        task: the task the run must have been trained for (None: any).
    """
    model_dir = Path(model_dir)
    config_file = model_dir / CONFIG_FILE
    if not config_file.is_file():
        raise MissingFileError(f"{model_dir}: no {CONFIG_FILE} (expected a run's model/ directory)")
    verify_saved(model_dir)
    tree = read_json(config_file)
    name = tree.pop("task", None)
    if name is None:
        raise ConfigError(
            f"{config_file}: field 'task': not found (an export of an older groundattn; "
            "export the model again with this one)"
        )
    if task is not None and name != task:
        raise ConfigError(f"{model_dir}: a {name} model, not a {task} one")
    # The weights come from model_dir: nothing is loaded on the way.
    tree["model"] = {**tree["model"], "init": None, "vlbert_checkpoint": None}
    if data_root is not None:
        tree["data"] = {**tree["data"], "root": str(data_root)}
    cls = recipe_class(name)
    recipe = cls(load_config(cls.config_class, None, list(overrides), base=tree))
    recipe.load_export(model_dir)
    with safe_open(str(model_dir / MODEL_FILE), framework="pt") as f:
        feature_dim = f.get_slice(ENCODER_FEATURES).get_shape()[1]
    module = recipe.build_task(build_encoder(recipe.config.model, feature_dim)[0])
    load_model_weights(model_dir, module, strict=True)
    return SavedRun(model_dir, recipe, module)


def count_metrics(
    module: Task, dataset: TaskDataset, recipe: Recipe, *, batch_size: int, device: torch.device
) -> dict[str, float]:
    """Validation metrics of one process over a whole dataset (the trainer's, unsharded)."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    batches = DataLoader(dataset, batch_size=batch_size, collate_fn=recipe.collate)
    return metrics_of(*validation_sums(module, batches, device), recipe.summarize)


def evaluate(
    model_dir: str | Path,
    data_root: str | Path | None = None,
    split: str = "val",
    *,
    overrides: Sequence[str] = (),
    out_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    task: str | None = None,
) -> dict:
    """Metrics of a run's ``model/`` on one split (any task); one process.

    Args:
        model_dir: a run's ``model/`` export.
        data_root: the data set (default: the one the run was trained on).
        split: the split to evaluate (refs split for refcoco).
        overrides: dotted config changes, e.g. ``data.boxes=ground_truth``.
        out_dir: where files such as VQA predictions go (default: a new
            ``evaluations/<split>-<k>/`` beside ``model_dir``).
        batch_size: samples per forward pass.
        device: where the model runs (default: CUDA when there is one).
        task: the task the model must have been trained for (None: any).
    """
    model_dir = Path(model_dir)
    if batch_size < 1:
        raise ConfigError(
            f"--batch-size: expected a positive number of samples, found {batch_size}"
        )
    saved = load_run(model_dir, data_root, overrides, task=task)
    recipe = saved.recipe
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dataset = recipe.eval_dataset(load_tokenizer(recipe.config.model.bert), split)
    module = saved.task.to(device)
    metrics = {
        "task": recipe.name,
        "split": split,
        **count_metrics(module, dataset, recipe, batch_size=batch_size, device=device),
    }
    # By default a fresh directory: never the training run's own predictions.
    out = (
        Path(out_dir)
        if out_dir is not None
        else free_name(model_dir.parent / "evaluations", split, "")
    )
    metrics.update(
        recipe.after_evaluate(module, dataset, split, out, batch_size=batch_size, device=device)
    )
    return metrics
