"""The VL pretraining task (METHOD §1): MLM with visual context + masked region classification.

``L = L_mlm + w·L_mrc``: cross-entropy of the chosen word pieces from their
final states through a head tied to the word embeddings, and cross-entropy of
the zeroed regions' classes from their final states. Both are means over the
predicted positions of the (global) batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from groundattn.model import VLEncoder
from groundattn.tasks.common import LossPart, Task, TaskOutput
from groundattn.tasks.pretrain.dataset import PretrainBatch
from groundattn.tasks.pretrain.heads import (
    MaskedLMHead,
    PredictionTransform,
    masked_cross_entropy,
)


class RegionClassHead(nn.Module):
    """Transform then a linear classifier over the region classes."""

    def __init__(self, encoder: VLEncoder, num_classes: int):
        super().__init__()
        self.transform = PredictionTransform(encoder.config)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_classes)

    def forward(self, states: Tensor) -> Tensor:
        return self.classifier(self.transform(states))  # (M, C)


class PretrainTask(Task):
    """MLM and (when ``num_region_classes`` > 0) MRC heads over a :class:`VLEncoder`."""

    def __init__(self, encoder: VLEncoder, num_region_classes: int = 0, mrc_weight: float = 1.0):
        super().__init__()
        self.encoder = encoder
        self.mlm = MaskedLMHead(encoder.config)
        self.mrc = RegionClassHead(encoder, num_region_classes) if num_region_classes else None
        self.mrc_weight = mrc_weight

    def forward(self, batch: PretrainBatch) -> TaskOutput:
        """MLM over the masked word pieces, MRC over the masked regions."""
        return self._output(batch)[0]

    def validate(self, batch: PretrainBatch) -> tuple[TaskOutput, dict[str, Tensor]]:
        output, (token_logits, token_labels), (region_logits, region_labels) = self._output(batch)
        device = token_logits.device
        counts = {
            "mlm_correct": (token_logits.argmax(-1) == token_labels).sum(),
            "mlm_by_token": torch.bincount(token_labels, minlength=token_logits.shape[-1]),
            "mlm_total": torch.tensor(len(token_labels), device=device),
        }
        if region_logits is None:
            none = torch.zeros((), dtype=torch.long, device=device)
            counts.update(mrc_correct=none, mrc_by_class=none[None], mrc_total=none)
        else:
            counts.update(
                mrc_correct=(region_logits.argmax(-1) == region_labels).sum(),
                mrc_by_class=torch.bincount(region_labels, minlength=region_logits.shape[-1]),
                mrc_total=torch.tensor(len(region_labels), device=device),
            )
        return output, counts

    def _output(self, batch: PretrainBatch):
        """The loss parts, and the (logits, labels) of the masked tokens and of the masked
        regions (None logits without MRC)."""
        hidden = self.encoder(batch.inputs).last_hidden_state  # (B, N, D)
        at_tokens = batch.mlm_labels >= 0  # (B, N)
        token_labels = batch.mlm_labels[at_tokens]  # (M,)
        token_logits = self.mlm(
            hidden[at_tokens], self.encoder.embeddings.word_embeddings.weight
        )  # (M, V)
        at_regions = batch.mrc_labels >= 0  # (B, N)
        region_labels = batch.mrc_labels[at_regions]  # (M',)
        region_logits = None
        if self.mrc is not None:
            region_logits = self.mrc(hidden[at_regions])  # (M', C)
            loss_mrc = masked_cross_entropy(region_logits, region_labels)
        else:
            loss_mrc = hidden.sum() * 0
        parts = {
            "mlm": LossPart(masked_cross_entropy(token_logits, token_labels), at_tokens.sum()),
            "mrc": LossPart(loss_mrc, at_regions.sum(), self.mrc_weight),
        }
        return TaskOutput(parts), (token_logits, token_labels), (region_logits, region_labels)


def summarize(counts: dict[str, Tensor]) -> dict[str, float]:
    """MLM and MRC accuracy, and their majority baselines, from counts summed over batches
    and processes.

    ``mrc_accuracy`` is left out when no region was classified (MRC off).
    """
    # Baselines: the most frequent masked word piece, the most frequent masked region class.
    metrics = {
        "mlm_accuracy": float(counts["mlm_correct"].double() / counts["mlm_total"].clamp_min(1)),
        "mlm_accuracy_baseline": float(
            counts["mlm_by_token"].max().double() / counts["mlm_total"].clamp_min(1)
        ),
        "mlm_tokens": int(counts["mlm_total"]),
        "mrc_regions": int(counts["mrc_total"]),
    }
    if int(counts["mrc_total"]):
        metrics["mrc_accuracy"] = float(counts["mrc_correct"].double() / counts["mrc_total"])
        metrics["mrc_accuracy_baseline"] = float(
            counts["mrc_by_class"].max().double() / counts["mrc_total"]
        )
    return metrics
