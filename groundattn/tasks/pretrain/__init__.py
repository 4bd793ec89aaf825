"""VL pretraining (METHOD §1): masked language modelling with visual context + masked region classification."""

from groundattn.tasks.pretrain.dataset import (
    CaptionDataset,
    PretrainBatch,
    RegionClasses,
    collate_pretrain,
    mask_regions,
    mask_tokens,
)
from groundattn.tasks.pretrain.heads import (
    MaskedLMHead,
    PredictionTransform,
    masked_cross_entropy,
)
from groundattn.tasks.pretrain.task import PretrainTask, RegionClassHead, summarize

__all__ = [
    "CaptionDataset",
    "MaskedLMHead",
    "PredictionTransform",
    "PretrainBatch",
    "PretrainTask",
    "RegionClassHead",
    "RegionClasses",
    "collate_pretrain",
    "mask_regions",
    "mask_tokens",
    "masked_cross_entropy",
    "summarize",
]
