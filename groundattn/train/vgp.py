"""The VGP fine-tuning run (METHOD §3): from a config to a trained, evaluated model."""

from __future__ import annotations

from pathlib import Path

import torch

from groundattn.config import ConfigError, VGPConfig
from groundattn.tasks.vgp import (
    VGPDataset,
    VGPTask,
    build_supervision,
    collate_vgp,
    most_grounded_heads,
    summarize,
)
from groundattn.tasks.vgp.regularizers import DistillSpec, EWCAnchor, Regularizers
from groundattn.tasks.vgp.supervision import Needs
from groundattn.train.checkpoint import MODEL_FILE
from groundattn.train.checkpoint_io import read_tensors
from groundattn.train.fisher import anchor_fisher, load_pretrained_task
from groundattn.train.models import ENCODER_PREFIX
from groundattn.train.run import Recipe, split_paths


class VGPRecipe(Recipe):
    """VGP fine-tuning with one attention supervision method.

    The summary holds ``method``, ``steps``, ``seconds``, ``before`` and
    ``after`` (validation metrics) and ``history``.
    """

    name = "vgp"
    config_class = VGPConfig
    collate = staticmethod(collate_vgp)
    summarize = staticmethod(summarize)

    def __init__(self, config: VGPConfig):
        super().__init__(config)
        self.regularizers: Regularizers | None = None
        self.supervised_heads: list[list[int]] | None = None  # the head mask, once training starts

    def required_paths(self) -> list[tuple[str, Path]]:
        self.config.check_anchor()
        paths = split_paths(self.config.data)
        if self.config.distill is not None and self.config.distill.teacher:
            paths.append(("distill.teacher", Path(self.config.distill.teacher)))
        return paths

    def prepare(self, device: torch.device) -> None:
        # Training only: an exported model is evaluated without its teacher and anchor.
        self.regularizers = build_regularizers(self.config, device)

    def eval_dataset(self, tokenizer, split: str, max_images: int | None = None) -> VGPDataset:
        data = self.config.data
        return VGPDataset(
            data.root,
            split,
            tokenizer,
            max_caption_tokens=data.max_caption_tokens,
            negatives=data.negatives,
            regions=data.regions,
            max_regions=data.max_regions,
            iou_threshold=data.iou_threshold,
            seed=self.config.run.seed,
            max_images=max_images,
        )

    def datasets(self, tokenizer) -> dict[str, VGPDataset]:
        data = self.config.data
        return {
            "train": self.eval_dataset(tokenizer, data.train_split),
            "val": self.eval_dataset(tokenizer, data.val_split, data.max_val_images),
        }

    def train_store(self) -> Path:
        data = self.config.data
        return data.root / "features" / f"{data.train_split}.h5"

    def build_task(self, encoder) -> VGPTask:
        config = encoder.config
        supervision = build_supervision(self.config.supervision, config.hidden_size)
        L, H = config.num_hidden_layers, config.num_attention_heads
        return VGPTask(encoder, supervision, head_mask(self.config, L, H), self.regularizers)

    def summary_head(self) -> dict:
        head = {"method": self.config.supervision.method}
        if self.supervised_heads is not None:
            head["supervised_heads"] = self.supervised_heads  # [layer, head], 0-based
        return head

    def before_fit(self, trainer) -> None:
        task = trainer.accelerator.unwrap_model(trainer.module)
        k = self.config.supervision.top_k_heads
        if k:
            L, H = task.head_mask.shape
            task.head_mask.copy_(most_grounded_heads(_accuracy_table(trainer.history[0], L, H), k))
        if task.supervision.needs in (Needs.ROW_LOGITS, Needs.PROBABILITIES):  # reads attention
            self.supervised_heads = task.head_mask.nonzero().tolist()


def build_regularizers(config: VGPConfig, device: torch.device) -> Regularizers | None:
    """Knowledge distillation and EWC of ``config.distill`` / ``config.ewc`` (None: neither).

    The teacher and the anchor come from a pretraining run's ``model/``
    (``distill.teacher``, else ``model.init``); the Fisher is stored beside it
    and reused (:mod:`groundattn.train.fisher`).
    """
    distill, ewc, root = config.distill, config.ewc, config.data.root
    if distill is None and ewc is None:
        return None
    teacher = spec = anchor = None
    if distill is not None:
        field = "distill.teacher" if distill.teacher else "model.init"
        teacher, _ = load_pretrained_task(distill.teacher or config.model.init, root, field)
        spec = DistillSpec(
            distill.mlm_weight,
            distill.mlm_temperature,
            distill.mrc_weight,
            distill.mrc_temperature,
            distill.hidden_weight,
            distill.hidden_loss,
        )
        if spec.mrc_weight and teacher.mrc is None:
            raise ConfigError(
                f"distill.mrc_weight: the teacher {field} was pretrained without MRC "
                "(no region-classification head); set distill.mrc_weight=0"
            )
    if ewc is not None:
        init = Path(config.model.init)
        fisher = anchor_fisher(
            init,
            root,
            split=config.data.train_split,
            batches=ewc.batches,
            batch_size=ewc.batch_size,
            seed=0,  # the anchor's Fisher, the same for every seed of the VGP run
            device=device,
        )
        weights = read_tensors(init / MODEL_FILE)
        theta = {name: weights[ENCODER_PREFIX + name].float() for name in fisher}
        if ewc.normalize:
            mean = sum(f.sum() for f in fisher.values()) / sum(f.numel() for f in fisher.values())
            fisher = {name: f / mean.clamp_min(1e-30) for name, f in fisher.items()}
        anchor = EWCAnchor(theta, fisher, ewc.weight)
    return Regularizers(teacher, spec, anchor)


def head_mask(config: VGPConfig, layers: int, heads: int) -> torch.Tensor | None:
    """(L, H) bool of the supervised heads from ``supervision.layers``/``heads``."""
    sup = config.supervision
    if sup.layers is None and sup.heads is None:
        return None
    for name, chosen, size in (("layers", sup.layers, layers), ("heads", sup.heads, heads)):
        if chosen is not None and any(not 0 <= i < size for i in chosen):
            raise ConfigError(f"supervision.{name}: values must lie in 0..{size - 1}, got {chosen}")
    mask = torch.zeros(layers, heads, dtype=torch.bool)
    mask[
        torch.tensor(sup.layers if sup.layers is not None else range(layers))[:, None],
        torch.tensor(sup.heads if sup.heads is not None else range(heads)),
    ] = True
    return mask


def _accuracy_table(metrics: dict, layers: int, heads: int) -> torch.Tensor:
    table = metrics.get("grounding_per_head")
    if table is None:
        raise ConfigError(
            "supervision.top_k_heads: the validation gave no per-head grounding accuracy"
        )
    return torch.tensor(table).view(layers, heads)
