"""VGP fine-tuning (METHOD §3): samples, heads, losses, metrics."""

from groundattn.tasks.vgp.dataset import VGPBatch, VGPDataset, collate_vgp
from groundattn.tasks.vgp.task import SupervisionSpec, VGPTask, most_grounded_heads, summarize

__all__ = [
    "SupervisionSpec",
    "VGPBatch",
    "VGPDataset",
    "VGPTask",
    "collate_vgp",
    "most_grounded_heads",
    "summarize",
]
