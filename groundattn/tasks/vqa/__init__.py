"""VQA fine-tuning (METHOD §7): samples, answer head, soft-score loss, official accuracy."""

from groundattn.tasks.vqa.dataset import VQABatch, VQADataset, answer_accuracies, collate_vqa
from groundattn.tasks.vqa.task import AnswerHead, VQATask, accuracy_counts, soft_bce, summarize

__all__ = [
    "AnswerHead",
    "VQABatch",
    "VQADataset",
    "VQATask",
    "accuracy_counts",
    "answer_accuracies",
    "collate_vqa",
    "soft_bce",
    "summarize",
]
