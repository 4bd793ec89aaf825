"""The phrase-grounding run on Flickr30k Entities: train, then val and the test splits.

``data.boxes`` chooses the candidates: ``ground_truth`` (the annotated
objects; every phrase with a box is answerable) or ``detected`` (the
detector's boxes; a phrase whose boxes the detector missed is unanswerable
and wrong). The summary's ``splits`` holds Recall@1 and Recall@5 with their
uniform-pick baselines on the validation split and on each of
``data.test_splits``, the ceiling ``answerable``, and the counts of phrases
left out for having no box (``phrases_not_visual``, ``phrases_no_box``) or
lying past the caption's truncation (``phrases_cut_off``).
"""

from __future__ import annotations

from pathlib import Path

from groundattn.config import PhraseGroundingConfig
from groundattn.tasks.phrase_grounding import (
    PhraseGroundingDataset,
    PhraseGroundingTask,
    collate_phrase_grounding,
    summarize,
)
from groundattn.train.run import Recipe, split_paths


def excluded_counts(dataset: PhraseGroundingDataset) -> dict[str, int]:
    """The phrases of the split that are no samples, by reason (``phrases_<reason>``)."""
    return {f"phrases_{reason}": count for reason, count in dataset.excluded.items()}


class PhraseGroundingRecipe(Recipe):
    """Region scoring for the phrases of Flickr30k Entities captions.

    The summary holds ``task``, ``boxes``, ``steps``, ``seconds``,
    ``before``/``after`` (validation ``recall_at_1``, ``recall_at_5``, their
    ``*_baseline``, ``answerable``, ``phrases``), ``history`` and ``splits``
    (the same for the validation split and each test split, with the counts of
    phrases left out).
    """

    name = "phrase-grounding"
    config_class = PhraseGroundingConfig
    collate = staticmethod(collate_phrase_grounding)
    summarize = staticmethod(summarize)

    def required_paths(self) -> list[tuple[str, Path]]:
        data = self.config.data
        tests = [
            ("data.test_splits", path)
            for split in data.test_splits
            for path in (data.root / f"{split}.txt", data.root / "features" / f"{split}.h5")
        ]
        return [*split_paths(data), *tests]

    def eval_dataset(
        self, tokenizer, split: str, max_phrases: int | None = None
    ) -> PhraseGroundingDataset:
        data = self.config.data
        return PhraseGroundingDataset(
            data.root,
            split,
            tokenizer,
            boxes=data.boxes,
            max_regions=data.max_regions,
            max_caption_tokens=data.max_caption_tokens,
            iou_threshold=data.iou_threshold,
            max_phrases=max_phrases,
        )

    def datasets(self, tokenizer) -> dict[str, PhraseGroundingDataset]:
        data = self.config.data
        datasets = {"train": self.eval_dataset(tokenizer, data.train_split)}
        datasets.update(
            {
                split: self.eval_dataset(tokenizer, split, data.max_test_phrases)
                for split in data.test_splits
            }
        )
        datasets["val"] = self.eval_dataset(tokenizer, data.val_split, data.max_val_phrases)
        return datasets

    def train_store(self) -> Path:
        data = self.config.data
        return data.root / "features" / f"{data.train_split}.h5"

    def build_task(self, encoder) -> PhraseGroundingTask:
        return PhraseGroundingTask(encoder)

    def summary_head(self) -> dict:
        return {"task": self.name, "boxes": self.config.data.boxes}

    def after_fit(self, trainer, datasets, out_dir: Path, after: dict) -> dict:
        data = self.config.data
        splits = {data.val_split: {**after, **excluded_counts(datasets["val"])}}
        splits.update(
            {
                split: {**trainer.evaluate(datasets[split]), **excluded_counts(datasets[split])}
                for split in data.test_splits
            }
        )
        return {"splits": splits}

    def after_evaluate(self, module, dataset, split, out_dir, *, batch_size, device) -> dict:
        return excluded_counts(dataset)
