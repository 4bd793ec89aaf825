"""The VQA task (METHOD §7): the [MASK] state → 2-layer MLP → answer vocabulary.

Loss: binary cross-entropy with logits against the soft scores, summed over
the answers and averaged over the questions, as VL-BERT (and the bottom-up
baseline before it) computes it: ``BCE(mean over all entries) × A``.
Validation counts the official accuracy of the arg-max answer per answer type,
as sums that add up over batches and processes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from groundattn.data.vqa import ANSWER_TYPES
from groundattn.model import VLEncoder
from groundattn.tasks.common import LossPart, Task, TaskOutput
from groundattn.tasks.vqa.dataset import VQABatch


def soft_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """(B, A) logits and soft targets → BCE summed over answers, averaged over questions."""
    if not len(targets):
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="sum") / len(
        targets
    )


class AnswerHead(nn.Module):
    """VL-BERT's answer classifier: dropout, linear, ReLU, dropout, linear."""

    def __init__(self, hidden_size: int, mlp_size: int, num_answers: int, dropout: float = 0.1):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(hidden_size, mlp_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_size, num_answers),
        )

    def forward(self, states: Tensor) -> Tensor:
        return self.mlp(states)  # (B, A)


class VQATask(Task):
    """An answer head over a :class:`VLEncoder`."""

    def __init__(
        self,
        encoder: VLEncoder,
        num_answers: int,
        *,
        mlp_size: int | None = None,
        dropout: float = 0.1,
    ):
        super().__init__()
        if num_answers < 1:
            raise ValueError(
                "the answer vocabulary is empty: lower data.min_answer_count or use a larger train split"
            )
        D = encoder.config.hidden_size
        self.encoder = encoder
        self.head = AnswerHead(D, mlp_size or 2 * D, num_answers, dropout)

    def logits(self, batch: VQABatch) -> Tensor:
        """(B, A) answer logits from each sample's [MASK] state."""
        hidden = self.encoder(batch.inputs).last_hidden_state  # (B, N, D)
        at_mask = hidden[
            torch.arange(len(batch), device=hidden.device), batch.answer_positions
        ]  # (B, D)
        return self.head(at_mask)

    def forward(self, batch: VQABatch) -> TaskOutput:
        """Soft BCE against the answers' scores, a mean over the questions."""
        return self._output(self.logits(batch), batch)

    def validate(self, batch: VQABatch) -> tuple[TaskOutput, dict[str, Tensor]]:
        logits = self.logits(batch)
        counts = accuracy_counts(logits, batch.answer_accuracy, batch.answer_type)
        return self._output(logits, batch), counts

    def _output(self, logits: Tensor, batch: VQABatch) -> TaskOutput:
        count = torch.tensor(len(batch), device=logits.device)
        return TaskOutput({"answers": LossPart(soft_bce(logits, batch.targets), count)})


def accuracy_counts(
    logits: Tensor, answer_accuracy: Tensor, answer_type: Tensor
) -> dict[str, Tensor]:
    """Sums of the official accuracy of the arg-max answer, overall and per answer type.

    Questions without annotation (``answer_type`` −1) count nowhere.
    """
    scored = answer_accuracy.gather(1, logits.argmax(-1, keepdim=True))[:, 0].double()  # (B,)
    onehot = (
        F.one_hot(answer_type.clamp_min(0), len(ANSWER_TYPES)).double()
        * (answer_type >= 0)[:, None]
    )  # (B, 3)
    counted = (answer_type >= 0)[:, None].double()  # (B, 1)
    return {
        "accuracy_by_type": scored @ onehot,  # (3,)
        "questions_by_type": onehot.sum(0),  # (3,)
        # What each answer would score if given to every question: the answer prior.
        "accuracy_by_answer": (answer_accuracy.double() * counted).sum(0),  # (A,)
    }


def summarize(counts: dict[str, Tensor]) -> dict[str, float]:
    """Official VQA accuracy overall and per answer type (fractions; 0 for a type without
    questions), and the answer prior's: the best constant answer on these questions."""
    sums, totals = counts["accuracy_by_type"].double(), counts["questions_by_type"].double()
    metrics = {
        "accuracy": float(sums.sum() / totals.sum().clamp_min(1)),
        # The answer prior: the best single answer given to every question.
        "accuracy_baseline": float(counts["accuracy_by_answer"].max() / totals.sum().clamp_min(1)),
        "questions": int(totals.sum()),
    }
    for k, name in enumerate(ANSWER_TYPES):
        metrics[f"accuracy_{name.replace('/', '_')}"] = float(sums[k] / totals[k].clamp_min(1))
    return metrics
