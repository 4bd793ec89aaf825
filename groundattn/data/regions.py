"""The regions an encoder sees for one image, and which of them a phrase names.

Regions come from the feature store: the whole image r0 first, then the boxes
of the chosen provenance (ground truth, detected, or both). A chain (an entity
of Flickr30k Entities, or a referent) is grounded to regions by one rule for
every provenance: each of its boxes names the region of highest IoU with it,
if that IoU reaches ``iou_threshold``. Ground-truth regions thus name exactly
their own box; detected regions the detection that covers the box best. r0 is
never a grounding target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from groundattn.data.boxes import box_iou, normalize_boxes
from groundattn.data.store import Provenance, RegionFeatures

RegionSource = Literal["ground_truth", "detected", "all"]
_KEEP = {
    "ground_truth": (Provenance.GROUND_TRUTH, Provenance.GRID),
    "detected": (Provenance.DETECTED, Provenance.GRID),
    "all": (Provenance.GROUND_TRUTH, Provenance.DETECTED, Provenance.GRID),
}


@dataclass(frozen=True)
class ImageRegions:
    """Regions of one image as the encoder takes them (r0 first)."""

    features: np.ndarray  # (R, F) float32
    boxes: np.ndarray  # (R, 4) float32, pixels x1 y1 x2 y2
    normalized_boxes: np.ndarray  # (R, 4) float32, divided by width and height
    store_rows: np.ndarray  # (R,) int: rows of the store entry

    def __len__(self) -> int:
        return self.features.shape[0]


def select_regions(
    regions: RegionFeatures, source: RegionSource, max_regions: int | None = None
) -> ImageRegions:
    """r0 then the boxes of ``source``, at most ``max_regions`` in all (store order kept)."""
    if source not in _KEEP:
        raise ValueError(f"region source must be one of {sorted(_KEEP)}, got {source!r}")
    prov = regions.provenance
    whole = np.flatnonzero(prov == Provenance.WHOLE_IMAGE)
    if whole.size != 1:
        raise ValueError(f"a store entry needs exactly one whole-image box, found {whole.size}")
    others = np.flatnonzero(np.isin(prov, _KEEP[source]))
    rows = np.concatenate([whole, others])
    if max_regions is not None:
        rows = rows[:max_regions]
    boxes = regions.boxes[rows]
    return ImageRegions(
        features=regions.features[rows],
        boxes=boxes,
        normalized_boxes=normalize_boxes(boxes, regions.width, regions.height),
        store_rows=rows,
    )


def ground_chains(
    chain_boxes: Mapping[str, Sequence[Sequence[float]]],
    regions: ImageRegions,
    iou_threshold: float = 0.5,
) -> dict[str, list[int]]:
    """Chain id → the region slots (indices into ``regions``, never 0) that its boxes name."""
    grounded: dict[str, list[int]] = {}
    candidates = regions.boxes[1:]  # (R-1, 4), without r0
    if not len(candidates):
        return grounded
    for chain, boxes in chain_boxes.items():
        if not len(boxes):
            continue
        iou = box_iou(np.asarray(boxes, np.float32), candidates)  # (K, R-1)
        best = iou.argmax(1)  # (K,)
        hit = iou[np.arange(len(best)), best] >= iou_threshold
        slots = sorted({int(s) + 1 for s in best[hit]})
        if slots:
            grounded[chain] = slots
    return grounded
