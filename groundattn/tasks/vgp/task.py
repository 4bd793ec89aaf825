"""The VGP fine-tuning task (METHOD §3, Eq. 9): heads, losses and validation counts.

``L = L_id + L_vgp + λ·L_att``: image description identification on [CLS]
(Eq. 1), 5-way VGP classification of phrase pairs from max-pooled exact
phrase spans (Eqs. 2–4), and one attention supervision method. Direct
supervision reads the encoder's cheap row logits; semi-direct asks for the
full probabilities, and only then.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from groundattn.model import VLEncoder
from groundattn.supervision import (
    grounding_chance,
    grounding_hits,
    max_pool_spans,
    phrase_grounding_hits,
    rollout,
    token_spread,
)
from groundattn.tasks.common import LossPart, Task, TaskOutput
from groundattn.tasks.vgp.dataset import VGPBatch
from groundattn.tasks.vgp.regularizers import Regularizers
from groundattn.tasks.vgp.supervision import Needs, NoSupervision, Supervision

NUM_VGP_CLASSES = 5
# A head "grounds" when the arg-max of its attention is the right region for at least
# this fraction of the grounded tokens (``grounded_heads``).
GROUNDED_HEAD_ACCURACY = 0.5


class VGPTask(Task):
    """Heads and losses of VGP fine-tuning over a :class:`VLEncoder`.

    ``supervision`` is the attention-supervision method
    (:mod:`groundattn.tasks.vgp.supervision`); ``head_mask`` (L, H) bool chooses
    the supervised (layer, head) pairs; for a head-averaged rollout only its
    layers count. ``regularizers`` (knowledge distillation, EWC) add their terms
    to the training loss.
    """

    def __init__(
        self,
        encoder: VLEncoder,
        supervision: Supervision | None = None,
        head_mask: Tensor | None = None,
        regularizers: Regularizers | None = None,
    ):
        super().__init__()
        config = encoder.config
        D = config.hidden_size
        self.encoder = encoder
        self.supervision = NoSupervision() if supervision is None else supervision
        self.identification = nn.Linear(D, 3)  # Eq. 1
        self.vgp = nn.Linear(4 * D, NUM_VGP_CLASSES)  # Eq. 4 on [e1, e2, e1*e2, |e1-e2|]
        L, H = config.num_hidden_layers, config.num_attention_heads
        mask = torch.ones(L, H, dtype=torch.bool) if head_mask is None else head_mask.bool()
        if mask.shape != (L, H) or not mask.any():
            raise ValueError(
                f"head_mask must be a non-empty ({L}, {H}) mask, got shape {tuple(mask.shape)}"
            )
        self.register_buffer("head_mask", mask, persistent=False)
        # Against forgetting (KD, EWC); not a sub-module: the teacher is not this model's.
        self.regularizers = regularizers

    def forward(self, batch: VGPBatch) -> TaskOutput:
        """Identification, VGP classification, the attention supervision and the regularisers."""
        rows = self.supervision.rows(batch)
        out = self.encoder(
            batch.inputs,
            attention_rows=None if rows is None else rows[0],
            output_attentions=self.supervision.needs is Needs.PROBABILITIES,
        )
        output = self._output(out, batch, rows)[0]
        if self.regularizers is not None:
            output.parts.update(self.regularizers(self.encoder, batch.inputs, out))
        return output

    def validate(self, batch: VGPBatch) -> tuple[TaskOutput, dict[str, Tensor]]:
        # Validation counts need the probabilities, so validation takes the full path.
        out = self.encoder(batch.inputs, output_attentions=True, output_hidden_states=True)
        output, id_logits, (vgp_logits, vgp_labels) = self._output(out, batch, None)
        return output, self._counts(out, batch, id_logits, vgp_logits, vgp_labels)

    def _output(self, out, batch: VGPBatch, rows) -> tuple[TaskOutput, Tensor, tuple]:
        """The loss parts (Eq. 9), the identification logits and the VGP (logits, labels)."""
        hidden = out.last_hidden_state  # (B, N, D)
        id_logits = self.identification(hidden[:, 0])  # (B, 3)
        phrases = max_pool_spans(hidden, batch.phrase_mask)  # (B, P, D)
        vgp_logits, vgp_labels = self._pair_logits(phrases, batch.pairs)  # (M, 5), (M,)
        loss_vgp = F.cross_entropy(vgp_logits, vgp_labels) if len(vgp_labels) else hidden.sum() * 0
        att = self.supervision(out, batch, self.head_mask, rows)
        weight = self.supervision.weight
        device = hidden.device
        parts = {
            "id": LossPart(
                F.cross_entropy(id_logits, batch.id_labels), torch.tensor(len(batch), device=device)
            ),
            "vgp": LossPart(loss_vgp, torch.tensor(len(vgp_labels), device=device)),
            "att_txt2img": LossPart(att.txt2img, att.txt2img_rows, weight),
            "att_img2txt": LossPart(att.img2txt, att.img2txt_rows, weight),
        }
        return TaskOutput(parts), id_logits, (vgp_logits, vgp_labels)

    def _pair_logits(self, phrases: Tensor, pairs: Tensor) -> tuple[Tensor, Tensor]:
        valid = pairs[..., 2] >= 0  # (B, K)
        b = torch.arange(pairs.shape[0], device=pairs.device)[:, None].expand_as(valid)[
            valid
        ]  # (M,)
        e1 = phrases[b, pairs[..., 0][valid]]  # (M, D)
        e2 = phrases[b, pairs[..., 1][valid]]  # (M, D)
        ec = torch.cat([e1, e2, e1 * e2, (e1 - e2).abs()], -1)  # (M, 4D), Eq. 3
        return self.vgp(ec), pairs[..., 2][valid]

    def _counts(self, out, batch, id_logits, vgp_logits, vgp_labels) -> dict[str, Tensor]:
        probs = out.attention.probs.float()  # (B, L, H, N, N)
        hits, count = grounding_hits(probs, batch.grounding, out.region_mask)
        rolled_hits, _ = grounding_hits(
            rollout(probs, out.valid_mask), batch.grounding, out.region_mask
        )
        phrase_hits, phrases, phrase_chance = phrase_grounding_hits(
            probs, batch.phrase_mask, batch.phrase_regions, out.region_mask
        )
        confusion = torch.zeros(
            NUM_VGP_CLASSES, NUM_VGP_CLASSES, dtype=torch.long, device=id_logits.device
        )
        if len(vgp_labels):
            confusion.index_put_(
                (vgp_labels, vgp_logits.argmax(-1)), torch.ones_like(vgp_labels), accumulate=True
            )
        region_spread, region_samples = token_spread(out.hidden_states, batch.inputs.candidate_mask)
        text_spread, text_samples = token_spread(out.hidden_states, out.text_mask)
        return {
            "region_spread": region_spread,  # (L + 1,)
            "region_spread_samples": region_samples,
            "text_spread": text_spread,  # (L + 1,)
            "text_spread_samples": text_samples,
            "id_correct": (id_logits.argmax(-1) == batch.id_labels).sum(),
            "id_by_class": torch.bincount(batch.id_labels, minlength=3),  # (3,)
            "grounding_chance": grounding_chance(batch.grounding, out.region_mask),
            "id_total": torch.tensor(len(batch.id_labels), device=id_logits.device),
            "vgp_confusion": confusion,
            "grounding_hits": hits,
            "grounding_total": count,
            "rollout_hits": rolled_hits[:, 0],
            "phrase_hits": phrase_hits,
            "phrase_total": phrases,
            "phrase_chance": phrase_chance,
        }


def summarize(counts: dict[str, Tensor]) -> dict[str, float]:
    """Validation metrics from counts summed over batches and processes."""
    confusion = counts["vgp_confusion"].double()
    tp = confusion.diag()
    precision = tp / confusion.sum(0).clamp_min(1)
    recall = tp / confusion.sum(1).clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    present = confusion.sum(1) > 0
    total = counts["grounding_total"].clamp_min(1).double()
    accuracy = counts["grounding_hits"].double() / total  # (L, H)
    best = int(accuracy.argmax())
    H = accuracy.shape[1]
    rolled = counts["rollout_hits"].double() / total  # (L,)
    phrases = counts["phrase_total"].clamp_min(1).double()
    phrase_recall = counts["phrase_hits"].double() / phrases  # (L, H)
    # Baselines: the majority class of the validation labels; uniform attention over regions.
    return {
        "id_accuracy": float(counts["id_correct"] / counts["id_total"].clamp_min(1)),
        "id_accuracy_baseline": float(
            counts["id_by_class"].max() / counts["id_total"].clamp_min(1)
        ),
        "vgp_accuracy": float(tp.sum() / confusion.sum().clamp_min(1)),
        "vgp_accuracy_baseline": float(confusion.sum(1).max() / confusion.sum().clamp_min(1)),
        "grounding_baseline": float(counts["grounding_chance"] / total),
        "vgp_macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "grounding_best": float(accuracy.max()),
        "grounding_best_layer": best // H,
        "grounding_best_head": best % H,
        "grounding_mean": float(accuracy.mean()),
        "rollout_best": float(rolled.max()),
        "rollout_mean": float(rolled.mean()),
        "grounding_per_head": accuracy.flatten().tolist(),  # (L·H,), row-major
        "rollout_per_layer": rolled.tolist(),
        "grounded_heads": int((accuracy >= GROUNDED_HEAD_ACCURACY).sum()),
        # Zero-shot phrase grounding by attention: the head of best grounding accuracy
        # (chosen by tokens, not by this recall) and, beside it, every head.
        "phrase_recall_at_1_best_head": float(phrase_recall.flatten()[best]),
        "phrase_recall_at_1_baseline": float(counts["phrase_chance"] / phrases),
        "phrase_recall_at_1_per_head": phrase_recall.flatten().tolist(),  # (L·H,), row-major
        # How distinct the candidate regions (and, beside them, the words) of a sample stay,
        # embeddings then each layer (groundattn.supervision.spread).
        "region_spread_per_layer": (
            counts["region_spread"] / counts["region_spread_samples"].clamp_min(1)
        ).tolist(),
        "text_spread_per_layer": (
            counts["text_spread"] / counts["text_spread_samples"].clamp_min(1)
        ).tolist(),
    }


def most_grounded_heads(accuracy: Tensor, k: int) -> Tensor:
    """(L, H) bool marking the k (layer, head) pairs of highest grounding accuracy."""
    mask = torch.zeros(accuracy.numel(), dtype=torch.bool)
    mask[accuracy.flatten().topk(min(k, accuracy.numel())).indices] = True
    return mask.view_as(accuracy)
