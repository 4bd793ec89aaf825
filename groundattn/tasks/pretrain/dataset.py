"""VL pretraining samples (METHOD §1): one caption with its image's regions, masked.

A sample is ``[CLS] caption [SEP] r0 r1 … rK [END]`` (one segment of text).
At every epoch it draws, from ``(seed, epoch, index)`` alone:

- **masked language modelling**: each word piece of the caption (never
  ``[CLS]``/``[SEP]``) is chosen with ``token_probability``; a chosen piece
  becomes ``[MASK]`` (80 %), a random non-special word piece (10 %) or stays
  (10 %), and is predicted;
- **masked region classification**: each region with a known class (never
  r0) is chosen with ``region_probability``; its feature is zeroed (its box
  is kept) and its class is predicted.

Region classes (:class:`RegionClasses`), the rule: a store row of ground-truth
provenance takes the category of the COCO instance (``instances.json`` of the
same image id) with the highest IoU with it, if that IoU is at least 0.5; a
row of detected provenance takes the ``category_id`` of the entry of the
detections file (same image) with the highest IoU, again from 0.5. Classes
index the instances file's categories sorted by id. Rows that match nothing,
whole-image and grid rows have no class and are never masked. The embedded
scenes have both files (``refcoco+/``, their image ids are the Flickr30k
ones); a data set without them has no classes, and the run switches MRC off
with a warning (:mod:`groundattn.train.pretrain`).

Known leaks, as features are precomputed: r0's feature and overlapping boxes
still see a zeroed region's pixels (VL-BERT zeroes the pixels before its
detector runs, which a feature store cannot).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from groundattn.data.boxes import box_iou
from groundattn.data.flickr30k import Flickr30kEntities
from groundattn.data.refcoco import load_detections, load_instances
from groundattn.data.regions import RegionSource, select_regions
from groundattn.data.store import FeatureStore, Provenance, RegionFeatures
from groundattn.errors import MissingFileError
from groundattn.model import VLBatch, pack
from groundattn.tasks.common import TaskBatch, TaskDataset

log = logging.getLogger(__name__)

IGNORE = -100  # label of a position that is not predicted
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # of chosen word pieces; the rest stay as they are
CLASS_IOU = 0.5


def mask_tokens(
    token_ids: np.ndarray,
    rng: np.random.Generator,
    *,
    probability: float,
    mask_id: int,
    random_ids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masking of a caption's word pieces (no special token among them).

    Returns the input ids and the labels (the original id where chosen, else ``IGNORE``).
    """
    chosen = rng.random(len(token_ids)) < probability
    action = rng.random(len(token_ids))
    inputs = token_ids.copy()
    inputs[chosen & (action < MASK_SHARE)] = mask_id
    replaced = chosen & (action >= MASK_SHARE) & (action < MASK_SHARE + RANDOM_SHARE)
    inputs[replaced] = rng.choice(random_ids, size=int(replaced.sum()))
    return inputs, np.where(chosen, token_ids, IGNORE)


def mask_regions(
    classes: np.ndarray, rng: np.random.Generator, *, probability: float
) -> np.ndarray:
    """(R,) bool: regions chosen for MRC among those with a class; never r0 (slot 0)."""
    chosen = (classes >= 0) & (rng.random(len(classes)) < probability)
    chosen[:1] = False
    return chosen


@dataclass(frozen=True)
class RegionClasses:
    """Object categories of the store's boxes (see the module docstring for the rule)."""

    category_ids: list[int]
    names: list[str]
    ground_truth: dict[
        str, tuple[np.ndarray, np.ndarray]
    ]  # image id → (K, 4) xyxy boxes, (K,) class
    detected: dict[str, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def load(
        cls, instances_path: str | Path, detections_path: str | Path | None = None
    ) -> RegionClasses:
        """Reads a COCO instances file and, optionally, a detections file."""
        instances = load_instances(instances_path)
        category_ids = sorted(instances.categories)
        index = {c: k for k, c in enumerate(category_ids)}
        ground_truth = _by_image(
            (str(a.image_id), a.box_xyxy, index[a.category_id])
            for a in instances.annotations.values()
        )
        detected = {}
        if detections_path is not None and Path(detections_path).is_file():
            detections = load_detections(detections_path)
            detected = _by_image(
                (str(d.image_id), d.box_xyxy, index[d.category_id])
                for d in detections
                if d.category_id in index
            )
        return cls(
            category_ids, [instances.categories[c] for c in category_ids], ground_truth, detected
        )

    def __len__(self) -> int:
        return len(self.category_ids)

    def labels(self, image_id: str | int, layout: RegionFeatures, rows: np.ndarray) -> np.ndarray:
        """(R,) int64 class of each selected store row, ``IGNORE`` where unknown."""
        out = np.full(len(rows), IGNORE, np.int64)
        provenance = layout.provenance[rows]
        for kind, table in (
            (Provenance.GROUND_TRUTH, self.ground_truth),
            (Provenance.DETECTED, self.detected),
        ):
            slots = np.flatnonzero(provenance == kind)
            known = table.get(str(image_id))
            if not len(slots) or known is None:
                continue
            boxes, classes = known
            iou = box_iou(layout.boxes[rows[slots]], boxes)  # (S, K)
            best = iou.argmax(1)  # (S,)
            hit = iou[np.arange(len(slots)), best] >= CLASS_IOU
            out[slots[hit]] = classes[best[hit]]
        return out


def _by_image(entries) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    grouped: dict[str, list] = defaultdict(list)
    for image_id, box, label in entries:
        grouped[image_id].append((box, label))
    return {
        i: (np.array([b for b, _ in items], np.float32), np.array([c for _, c in items], np.int64))
        for i, items in grouped.items()
    }


@dataclass
class PretrainBatch(TaskBatch):
    """A collated pretraining batch; labels are in sequence positions of ``inputs``."""

    inputs: VLBatch
    mlm_labels: Tensor  # (B, N) long: original word piece at chosen text positions, else -100
    mrc_labels: Tensor  # (B, N) long: class at zeroed region positions, else -100


class CaptionDataset(TaskDataset):
    """Captions of one split of a Flickr30k Entities root with ``features/<split>.h5``.

    ``region_classes`` None (or ``region_probability`` 0) switches MRC off.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        tokenizer,
        *,
        max_caption_tokens: int = 32,
        regions: RegionSource = "ground_truth",
        max_regions: int | None = None,
        region_classes: RegionClasses | None = None,
        token_probability: float = 0.15,
        region_probability: float = 0.15,
        max_images: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        root = Path(root)
        entities = Flickr30kEntities(root)
        if split not in entities.splits:
            raise MissingFileError(
                f"{root}: no split file {split}.txt (found: {sorted(entities.splits)})"
            )
        self.image_ids = entities.splits[split][:max_images]
        self.store = FeatureStore(root / "features" / f"{split}.h5")
        self.cls_id, self.sep_id, self.mask_id = (
            tokenizer.cls_token_id,
            tokenizer.sep_token_id,
            tokenizer.mask_token_id,
        )
        self.random_ids = np.setdiff1d(np.arange(len(tokenizer)), tokenizer.all_special_ids)
        self.token_probability, self.region_probability = token_probability, region_probability
        self.seed, self.epoch = seed, 0
        self.region_classes = region_classes if region_probability > 0 else None

        self.rows, self.boxes, self.classes, self.samples = [], [], [], []
        texts, owners = [], []
        for n, image_id in enumerate(self.image_ids):
            layout = self.store.layout(image_id)
            selected = select_regions(layout, regions, max_regions)
            self.rows.append(selected.store_rows)
            self.boxes.append(torch.from_numpy(selected.normalized_boxes))
            if self.region_classes is not None:
                self.classes.append(
                    self.region_classes.labels(image_id, layout, selected.store_rows)
                )
            for caption in entities.captions(image_id):
                texts.append(caption.text)
                owners.append(n)
        encoded = tokenizer(
            texts, add_special_tokens=False, truncation=True, max_length=max_caption_tokens
        )
        self.samples = list(
            zip(owners, (np.array(ids, np.int64) for ids in encoded["input_ids"]), strict=True)
        )

    @property
    def labelled_regions(self) -> int:
        """Regions (r0 excluded) that have a class: MRC's candidates."""
        return int(sum((c[1:] >= 0).sum() for c in self.classes))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, ids = self.samples[index]
        inputs, labels = mask_tokens(
            ids,
            rng,
            probability=self.token_probability,
            mask_id=self.mask_id,
            random_ids=self.random_ids,
        )
        features = self.store.features(self.image_ids[image], self.rows[image])  # (R, F)
        region_labels = np.full(len(features), IGNORE, np.int64)
        if self.region_classes is not None:
            classes = self.classes[image]
            zeroed = mask_regions(classes, rng, probability=self.region_probability)
            features[zeroed] = 0.0
            region_labels = np.where(zeroed, classes, IGNORE)
        return {
            "token_ids": [self.cls_id, *inputs.tolist(), self.sep_id],
            "mlm_labels": [IGNORE, *labels.tolist(), IGNORE],
            "features": torch.from_numpy(features),
            "boxes": self.boxes[image],
            "mrc_labels": region_labels.tolist(),
        }


def collate_pretrain(samples: list[dict]) -> PretrainBatch:
    """Packs samples in the VL-BERT layout and places their labels at their positions."""
    inputs = pack(
        [s["token_ids"] for s in samples],
        [[0] * len(s["token_ids"]) for s in samples],
        [s["features"] for s in samples],
        [s["boxes"] for s in samples],
    )
    B, N = inputs.input_ids.shape
    mlm = torch.full((B, N), IGNORE, dtype=torch.long)
    mlm[inputs.text_mask] = torch.tensor(
        [x for s in samples for x in s["mlm_labels"]], dtype=torch.long
    )
    mrc = torch.full((B, N), IGNORE, dtype=torch.long)
    # pack puts the k-th region of each sample at its k-th region position, in order.
    mrc[inputs.region_mask] = torch.tensor(
        [x for s in samples for x in s["mrc_labels"]], dtype=torch.long
    )
    return PretrainBatch(inputs=inputs, mlm_labels=mlm, mrc_labels=mrc)
