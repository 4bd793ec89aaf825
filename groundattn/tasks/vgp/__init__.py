"""VGP fine-tuning (METHOD §3): samples, heads, losses, metrics."""

from groundattn.tasks.vgp.dataset import VGPBatch, VGPDataset, collate_vgp
from groundattn.tasks.vgp.supervision import METHODS, Needs, Supervision, build_supervision
from groundattn.tasks.vgp.task import VGPTask, most_grounded_heads, summarize

__all__ = [
    "METHODS",
    "Needs",
    "Supervision",
    "VGPBatch",
    "VGPDataset",
    "VGPTask",
    "build_supervision",
    "collate_vgp",
    "most_grounded_heads",
    "summarize",
]
