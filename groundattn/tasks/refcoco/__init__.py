"""Referring expressions (METHOD §7): samples, region scorer, BCE, top-region accuracy."""

from groundattn.tasks.refcoco.dataset import (
    RefCOCOBatch,
    RefCOCODataset,
    collate_refcoco,
    index_stores,
)
from groundattn.tasks.refcoco.task import RefCOCOTask, summarize
from groundattn.tasks.regions import chance_hits, region_bce, top_region_hits

__all__ = [
    "RefCOCOBatch",
    "RefCOCODataset",
    "RefCOCOTask",
    "chance_hits",
    "collate_refcoco",
    "index_stores",
    "region_bce",
    "summarize",
    "top_region_hits",
]
