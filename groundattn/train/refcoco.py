"""The referring-expressions run (METHOD §7, VL-BERT protocol): train, then val, testA, testB.

``data.boxes`` chooses the candidates: ``ground_truth`` (the annotated
objects; every expression is answerable) or ``detected`` (the detector's
boxes; a referent the detector missed makes its expressions unanswerable and
wrong). The summary's ``splits`` holds the accuracy on the validation split
and on each of ``data.test_splits``, with ``answerable``, the ceiling.
"""

from __future__ import annotations

from pathlib import Path

from groundattn.config import ConfigError, RefCOCOConfig
from groundattn.data.refcoco import load_instances, load_refs
from groundattn.tasks.refcoco import (
    RefCOCODataset,
    RefCOCOTask,
    collate_refcoco,
    index_stores,
    summarize,
)
from groundattn.train.run import Recipe


class RefCOCORecipe(Recipe):
    """Region scoring for referring expressions.

    The summary holds ``task``, ``boxes``, ``steps``, ``seconds``,
    ``before``/``after`` (validation ``accuracy``, ``answerable``,
    ``sentences``), ``history`` and ``splits`` (the same metrics for the
    validation split and each test split).
    """

    name = "refcoco"
    config_class = RefCOCOConfig
    collate = staticmethod(collate_refcoco)
    summarize = staticmethod(summarize)

    def __init__(self, config: RefCOCOConfig):
        super().__init__(config)
        self._refer = None  # refs, instances, stores: read once

    def required_paths(self) -> list[tuple[str, Path]]:
        data = self.config.data
        return [
            (f"data.{name}", data.root / getattr(data, name))
            for name in ("refs", "instances", "features")
        ]

    def _load(self):
        if self._refer is None:
            data = self.config.data
            stores = index_stores(data.root / data.features)
            if not stores:
                raise ConfigError(
                    f"data.features: no feature store (*.h5) in {data.root / data.features}"
                )
            self._refer = (
                load_refs(data.root / data.refs),
                load_instances(data.root / data.instances),
                stores,
            )
        return self._refer

    def eval_dataset(
        self, tokenizer, split: str, max_sentences: int | None = None
    ) -> RefCOCODataset:
        data = self.config.data
        refs, instances, stores = self._load()
        chosen = [r for r in refs if r.split == split]
        if not chosen:
            raise ConfigError(
                f"{data.root / data.refs}: no refs of split {split!r} (found: {sorted({r.split for r in refs})})"
            )
        return RefCOCODataset(
            chosen,
            instances,
            stores,
            tokenizer,
            boxes=data.boxes,
            max_regions=data.max_regions,
            max_expression_tokens=data.max_expression_tokens,
            iou_threshold=data.iou_threshold,
            max_sentences=max_sentences,
        )

    def datasets(self, tokenizer) -> dict[str, RefCOCODataset]:
        data = self.config.data
        datasets = {"train": self.eval_dataset(tokenizer, data.train_split)}
        datasets.update(
            {
                split: self.eval_dataset(tokenizer, split, data.max_test_sentences)
                for split in data.test_splits
            }
        )
        datasets["val"] = self.eval_dataset(tokenizer, data.val_split, data.max_val_sentences)
        return datasets

    def train_store(self) -> Path:
        refs, _, stores = self._load()
        split = self.config.data.train_split
        image = next((str(r.image_id) for r in refs if r.split == split), None)
        if image is None or image not in stores:
            raise ConfigError(
                f"data.train_split: no feature store holds an image of split {split!r}"
            )
        return stores[image].path

    def build_task(self, encoder) -> RefCOCOTask:
        return RefCOCOTask(encoder)

    def summary_head(self) -> dict:
        return {"task": self.name, "boxes": self.config.data.boxes}

    def after_fit(self, trainer, datasets, out_dir: Path, after: dict) -> dict:
        data = self.config.data
        splits = {data.val_split: after}
        splits.update({split: trainer.evaluate(datasets[split]) for split in data.test_splits})
        return {"splits": splits}
