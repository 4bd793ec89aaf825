"""The VQA run (METHOD §7, VL-BERT protocol): fine-tune, validate, write predictions.

The answer vocabulary (normalised consensus answers of the training split seen
at least ``data.min_answer_count`` times) is written to ``answers.json`` in the
run directory and in ``model/``, and evaluation reuses it. After training, the
predictions of each of ``data.predict_splits`` are written in the official
results format, ``predictions_<split>.json`` (``[{"question_id", "answer"}]``),
by the main process, and scored with :func:`groundattn.data.vqa.evaluate`
where the split has annotations (``official`` in the summary; it equals the
counted validation accuracy on the same questions).
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from groundattn.config import ConfigError, VQAConfig
from groundattn.data.store import FeatureStore
from groundattn.data.vqa import answer_vocabulary, load_vqa, write_results
from groundattn.data.vqa import evaluate as official_accuracy
from groundattn.tasks.vqa import VQADataset, VQATask, collate_vqa, summarize
from groundattn.train.run import Recipe

log = logging.getLogger(__name__)

ANSWERS_FILE = "answers.json"


@torch.no_grad()
def predict_answers(
    module: VQATask, dataset: VQADataset, *, batch_size: int, device: torch.device, autocast=None
) -> dict[int, str]:
    """Question id → the arg-max answer of the vocabulary, for every question of ``dataset``."""
    was_training = module.training
    module.eval()
    results: dict[int, str] = {}
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_vqa):
        batch = batch.to(device)
        with autocast() if autocast is not None else nullcontext():
            best = module.logits(batch).argmax(-1)  # (B,)
        results.update(
            zip(
                batch.question_ids.tolist(),
                (dataset.answers[k] for k in best.tolist()),
                strict=True,
            )
        )
    module.train(was_training)
    return results


def write_predictions(
    module: nn.Module,
    dataset: VQADataset,
    split: str,
    out_dir: Path,
    *,
    batch_size: int,
    device: torch.device,
    autocast=None,
) -> dict:
    """Writes ``predictions_<split>.json``; returns its name and, with annotations, the official accuracy."""
    results = predict_answers(
        module, dataset, batch_size=batch_size, device=device, autocast=autocast
    )
    path = out_dir / f"predictions_{split}.json"
    write_results(path, results)
    annotations = dataset.annotations
    scored = (
        official_accuracy(results, annotations)
        if annotations and all(a is not None for a in annotations)
        else None
    )
    return {"file": path.name, "official": scored}


class VQARecipe(Recipe):
    """Answer classification from the [MASK] state.

    The summary holds ``task``, ``regions``, ``answers`` (vocabulary size),
    ``steps``, ``seconds``, ``before``/``after`` (``accuracy``,
    ``accuracy_yes_no``, ``accuracy_number``, ``accuracy_other``,
    ``questions``), ``history`` and ``predictions`` (per split: ``file``,
    ``official`` accuracies or None).
    """

    name = "vqa"
    config_class = VQAConfig
    collate = staticmethod(collate_vqa)
    summarize = staticmethod(summarize)

    def __init__(self, config: VQAConfig):
        super().__init__(config)
        self.answers: list[str] | None = None
        self.tokenizer = None

    def _path(self, template: str, split: str) -> Path:
        return self.config.data.root / template.format(split=split)

    def required_paths(self) -> list[tuple[str, Path]]:
        data = self.config.data
        paths = [
            (f"data.{name}", self._path(getattr(data, name), split))
            for split in (data.train_split, data.val_split)
            for name in ("questions", "annotations", "features")
        ]
        paths += [
            (f"data.{name}", self._path(getattr(data, name), split))
            for split in data.predict_splits
            for name in ("questions", "features")
        ]
        return paths

    def eval_dataset(self, tokenizer, split: str, max_questions: int | None = None) -> VQADataset:
        data = self.config.data
        annotations = self._path(data.annotations, split)
        examples = load_vqa(
            self._path(data.questions, split), annotations if annotations.is_file() else None
        )
        return VQADataset(
            examples[:max_questions],
            FeatureStore(self._path(data.features, split)),
            self.answers,
            tokenizer,
            regions=data.regions,
            max_regions=data.max_regions,
            max_question_tokens=data.max_question_tokens,
        )

    def datasets(self, tokenizer) -> dict[str, VQADataset]:
        data = self.config.data
        self.tokenizer = tokenizer
        train = load_vqa(
            self._path(data.questions, data.train_split),
            self._path(data.annotations, data.train_split),
        )
        self.answers = answer_vocabulary([e.annotation for e in train], data.min_answer_count)
        if not self.answers:
            raise ConfigError(
                f"data.min_answer_count: no answer of split {data.train_split} occurs {data.min_answer_count} times"
            )
        log.info(
            "answer vocabulary: %d answers seen at least %d times in %s",
            len(self.answers),
            data.min_answer_count,
            data.train_split,
        )
        return {
            "train": VQADataset(
                train,
                FeatureStore(self._path(data.features, data.train_split)),
                self.answers,
                tokenizer,
                regions=data.regions,
                max_regions=data.max_regions,
                max_question_tokens=data.max_question_tokens,
            ),
            "val": self.eval_dataset(tokenizer, data.val_split, data.max_val_questions),
        }

    def train_store(self) -> Path:
        data = self.config.data
        return self._path(data.features, data.train_split)

    def build_task(self, encoder) -> VQATask:
        head = self.config.head
        return VQATask(encoder, len(self.answers), mlp_size=head.hidden_size, dropout=head.dropout)

    def summary_head(self) -> dict:
        return {
            "task": self.name,
            "regions": self.config.data.regions,
            "answers": len(self.answers),
        }

    def start(self, out_dir: Path, resume: bool) -> None:
        path = out_dir / ANSWERS_FILE
        if resume and path.is_file() and json.loads(path.read_text()) != self.answers:
            raise ConfigError(
                f"{path}: the run being resumed has another answer vocabulary (data or data.min_answer_count changed)"
            )
        path.write_text(json.dumps(self.answers))

    def after_fit(self, trainer, datasets, out_dir: Path, after: dict) -> dict:
        acc, data = trainer.accelerator, self.config.data
        if not acc.is_main_process:
            return {}
        module = acc.unwrap_model(trainer.module)
        predictions = {}
        for split in data.predict_splits:
            full = split == data.val_split and data.max_val_questions is None
            dataset = datasets["val"] if full else self.eval_dataset(self.tokenizer, split)
            predictions[split] = write_predictions(
                module,
                dataset,
                split,
                out_dir,
                batch_size=self.config.optim.batch_size,
                device=acc.device,
                autocast=acc.autocast,
            )
        return {"predictions": predictions}

    def export(self, model_dir: Path) -> None:
        (model_dir / ANSWERS_FILE).write_text(json.dumps(self.answers))

    def load_export(self, model_dir: Path) -> None:
        self.answers = json.loads((model_dir / ANSWERS_FILE).read_text())

    def after_evaluate(self, module, dataset, split, out_dir, *, batch_size, device) -> dict:
        out_dir.mkdir(parents=True, exist_ok=True)
        return {
            "predictions": write_predictions(
                module, dataset, split, out_dir, batch_size=batch_size, device=device
            )
        }
