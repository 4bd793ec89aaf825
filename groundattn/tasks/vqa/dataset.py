"""VQA samples (METHOD §7, VL-BERT protocol): ``[CLS] question [MASK] [SEP] r0 r1 … rK [END]``.

Each question carries, over the answer vocabulary:

- its training targets, the soft scores ``min(1, annotators / 3)`` of
  :func:`groundattn.data.vqa.soft_scores` (answers outside the vocabulary get
  none; such questions stay, with all-zero targets, as in VL-BERT);
- the official VQA accuracy that predicting each answer would score
  (:func:`groundattn.data.vqa.vqa_accuracy`, leave-one-out over the ten human
  answers, normalised only when they differ), so validation reads the accuracy
  of the arg-max answer with a gather. Only answers that match a human answer
  (as written or normalised) can score; the others score 0.

A split without annotations (a test split) has no targets and no accuracy:
``annotated`` is False and its questions count nowhere but in predictions.
Nothing is random: items do not depend on the epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from groundattn.data.regions import RegionSource, select_regions
from groundattn.data.store import FeatureStore
from groundattn.data.vqa import (
    ANSWER_TYPES,
    VQAExample,
    normalize_answer,
    soft_scores,
    vqa_accuracy,
)
from groundattn.model import VLBatch, pack
from groundattn.tasks.common import TaskBatch, TaskDataset


def answer_accuracies(human_answers: Sequence[str], answers: dict[str, int]) -> dict[int, float]:
    """Vocabulary index → official accuracy of predicting that answer (non-zero entries only)."""
    stripped = {a.replace("\n", " ").replace("\t", " ").strip() for a in human_answers}
    candidates = {normalize_answer(a) for a in human_answers} | stripped
    scores = {answers[a]: vqa_accuracy(a, human_answers) for a in candidates if a in answers}
    return {k: v for k, v in scores.items() if v > 0}


@dataclass
class VQABatch(TaskBatch):
    """A collated VQA batch."""

    inputs: VLBatch
    targets: Tensor  # (B, A) float soft scores
    answer_accuracy: Tensor  # (B, A) float64 official accuracy of each answer
    answer_type: Tensor  # (B,) long index into ANSWER_TYPES; -1 without annotation
    question_ids: Tensor  # (B,) long

    @property
    def answer_positions(self) -> Tensor:
        """(B,) long: the [MASK] position, two before the end of each sample's text."""
        return self.inputs.text_lengths - 2


class VQADataset(TaskDataset):
    """Questions of one split with the regions of their images.

    Args:
        examples: the split's questions with their annotations (:func:`groundattn.data.vqa.load_vqa`).
        store: the feature store holding every image of the split.
        answers: the answer vocabulary (normalised answers, index order).
    """

    def __init__(
        self,
        examples: Sequence[VQAExample],
        store: FeatureStore,
        answers: Sequence[str],
        tokenizer,
        *,
        regions: RegionSource = "detected",
        max_regions: int | None = None,
        max_question_tokens: int = 24,
    ):
        super().__init__()
        self.store, self.answers = store, list(answers)
        self.examples = list(examples)
        self.cls_id, self.sep_id, self.mask_id = (
            tokenizer.cls_token_id,
            tokenizer.sep_token_id,
            tokenizer.mask_token_id,
        )
        index = {a: k for k, a in enumerate(self.answers)}
        self.token_ids = self.encode(
            tokenizer,
            [e.question.question for e in self.examples],
            max_question_tokens,
            "questions",
        )
        self.images: dict[
            int, tuple[np.ndarray, Tensor]
        ] = {}  # image id → store rows, normalised boxes
        for e in self.examples:
            image_id = e.question.image_id
            if image_id not in self.images:
                selected = select_regions(store.layout(image_id), regions, max_regions)
                self.images[image_id] = (
                    selected.store_rows,
                    torch.from_numpy(selected.normalized_boxes),
                )
        self.targets = [
            soft_scores(e.annotation.answers, index) if e.annotation else {} for e in self.examples
        ]
        self.accuracy = [
            answer_accuracies(e.annotation.answers, index) if e.annotation else {}
            for e in self.examples
        ]
        self.drop(
            "annotated questions with no answer in the answer vocabulary (kept: they score 0)",
            sum(
                1
                for e, t in zip(self.examples, self.targets, strict=True)
                if e.annotation and not t
            ),
        )

    @property
    def annotations(self) -> list:
        """The annotations of the split's questions (None where absent)."""
        return [e.annotation for e in self.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        rows, boxes = self.images[example.question.image_id]
        annotation = example.annotation
        return {
            "token_ids": [self.cls_id, *self.token_ids[index], self.mask_id, self.sep_id],
            "features": torch.from_numpy(self.store.features(example.question.image_id, rows)),
            "boxes": boxes,
            "targets": self.targets[index],
            "accuracy": self.accuracy[index],
            "answer_type": ANSWER_TYPES.index(annotation.answer_type) if annotation else -1,
            "question_id": example.question.question_id,
            "num_answers": len(self.answers),
        }


def _dense(
    rows: Sequence[dict[int, float]], width: int, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Per-sample sparse ``{index: value}`` → (B, width)."""
    out = torch.zeros(len(rows), width, dtype=dtype)
    b = [i for i, row in enumerate(rows) for _ in row]
    if b:
        out[torch.tensor(b), torch.tensor([k for row in rows for k in row])] = torch.tensor(
            [v for row in rows for v in row.values()], dtype=dtype
        )
    return out


def collate_vqa(samples: list[dict]) -> VQABatch:
    """Packs VQA samples in the VL-BERT layout (one text segment)."""
    inputs = pack(
        [s["token_ids"] for s in samples],
        [[0] * len(s["token_ids"]) for s in samples],
        [s["features"] for s in samples],
        [s["boxes"] for s in samples],
    )
    A = samples[0]["num_answers"]
    return VQABatch(
        inputs=inputs,
        targets=_dense([s["targets"] for s in samples], A),
        # float64: the sums of thirds then equal the official evaluation's to the last digit
        answer_accuracy=_dense([s["accuracy"] for s in samples], A, torch.float64),
        answer_type=torch.tensor([s["answer_type"] for s in samples], dtype=torch.long),
        question_ids=torch.tensor([s["question_id"] for s in samples], dtype=torch.long),
    )
