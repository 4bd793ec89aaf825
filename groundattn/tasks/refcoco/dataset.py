"""Referring-expression samples (METHOD §7, VL-BERT protocol): ``[CLS] expression [SEP] r0 r1 … rK [END]``.

One sample per sentence of a ref. Candidate regions are the boxes of one
provenance in the feature store (``ground_truth``: the annotated objects,
``detected``: the detector's), r0 excluded; a candidate is a positive when its
IoU with the referent's box (``instances.json``, through the ref's
``ann_id``) reaches ``iou_threshold`` (0.5). A prediction is correct when the
chosen box is a positive, so a sample without any positive (the detector
missed the referent) is counted and always wrong, as the protocol does.

An image may lie in any split's store (refer splits are not the image
splits): :func:`index_stores` finds each image's store. Nothing is random.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from groundattn.data.boxes import box_iou
from groundattn.data.errors import FormatError
from groundattn.data.refcoco import CocoInstances, Ref
from groundattn.data.regions import select_regions
from groundattn.data.store import FeatureStore
from groundattn.tasks.common import TaskDataset
from groundattn.tasks.regions import RegionBatch, collate_regions


def index_stores(folder: str | Path) -> dict[str, FeatureStore]:
    """Image id → the store of ``folder/*.h5`` that holds it (the first, by file name)."""
    index: dict[str, FeatureStore] = {}
    for path in sorted(Path(folder).glob("*.h5")):
        store = FeatureStore(path)
        for image_id in store.image_ids():
            index.setdefault(image_id, store)
    return index


@dataclass
class RefCOCOBatch(RegionBatch):
    """A collated batch; targets (IoU >= threshold with the referent) are in sequence positions of ``inputs``."""

    sent_ids: Tensor  # (B,) long


class RefCOCODataset(TaskDataset):
    """The sentences of some refs, with the candidate regions of their images.

    Args:
        refs: the refs of one split (:func:`groundattn.data.refcoco.load_refs`, filtered).
        instances: the COCO instances file holding each ref's ``ann_id``.
        stores: image id (as a string) → its feature store (:func:`index_stores`).
        boxes: ``"ground_truth"`` or ``"detected"`` candidates.
    """

    def __init__(
        self,
        refs: Sequence[Ref],
        instances: CocoInstances,
        stores: Mapping[str, FeatureStore],
        tokenizer,
        *,
        boxes: str = "detected",
        max_regions: int | None = None,
        max_expression_tokens: int = 24,
        iou_threshold: float = 0.5,
        max_sentences: int | None = None,
    ):
        super().__init__()
        if boxes not in ("ground_truth", "detected"):
            raise ValueError(f"boxes must be 'ground_truth' or 'detected', got {boxes!r}")
        self.stores = stores
        self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        sentences = [(ref, s) for ref in refs for s in ref.sentences][:max_sentences]
        for ref, _ in sentences:
            if str(ref.image_id) not in stores:
                folders = sorted({str(store.path.parent) for store in stores.values()})
                raise FormatError(
                    ", ".join(folders) or "features/",
                    f"image {ref.image_id} of ref {ref.ref_id} is in no feature store",
                )
            if ref.ann_id not in instances.annotations:
                raise FormatError(
                    instances.path,
                    f"ann_id {ref.ann_id} of ref {ref.ref_id} is not in the instances file",
                )
        self.token_ids = self.encode(
            tokenizer, [s.sent for _, s in sentences], max_expression_tokens, "expressions"
        )
        self.image_ids = [str(ref.image_id) for ref, _ in sentences]
        self.sent_ids = [s.sent_id for _, s in sentences]
        self.images: dict[
            str, tuple[np.ndarray, Tensor, np.ndarray]
        ] = {}  # rows, normalised boxes, pixel boxes
        for image_id in dict.fromkeys(self.image_ids):
            selected = select_regions(stores[image_id].layout(image_id), boxes, max_regions)
            self.images[image_id] = (
                selected.store_rows,
                torch.from_numpy(selected.normalized_boxes),
                selected.boxes,
            )
        # One IoU matrix per image, against the referents of all its sentences.
        by_image: dict[str, list[int]] = {}
        for index, image_id in enumerate(self.image_ids):
            by_image.setdefault(image_id, []).append(index)
        self.targets: list[list[bool]] = [[] for _ in sentences]
        for image_id, indices in by_image.items():
            referents = np.array(
                [instances.annotations[sentences[i][0].ann_id].box_xyxy for i in indices],
                np.float32,
            )  # (S, 4)
            positive = box_iou(self.images[image_id][2], referents) >= iou_threshold  # (R, S)
            positive[0] = False  # r0 is never a candidate
            for column, index in enumerate(indices):
                self.targets[index] = positive[:, column].tolist()

    @property
    def answerable(self) -> float:
        """Fraction of samples with at least one positive candidate: the accuracy's ceiling."""
        return sum(any(t) for t in self.targets) / max(1, len(self.targets))

    def __len__(self) -> int:
        return len(self.token_ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.image_ids[index]
        rows, boxes, _ = self.images[image_id]
        return {
            "token_ids": [self.cls_id, *self.token_ids[index], self.sep_id],
            "features": torch.from_numpy(self.stores[image_id].features(image_id, rows)),
            "boxes": boxes,
            "targets": self.targets[index],
            "sent_id": self.sent_ids[index],
        }


def collate_refcoco(samples: list[dict]) -> RefCOCOBatch:
    """Packs samples in the VL-BERT layout and places each region's target at its position."""
    inputs, targets = collate_regions(samples)
    return RefCOCOBatch(
        inputs=inputs, targets=targets, sent_ids=torch.tensor([s["sent_id"] for s in samples])
    )
