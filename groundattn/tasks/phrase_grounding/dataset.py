"""Phrase grounding samples on Flickr30k Entities: ``[CLS] caption [SEP] r0 r1 … rK [END]``.

One sample per phrase of a caption; the caption is given whole and the
phrase's word pieces are marked with segment 1 (the rest of the text is
segment 0, regions segment 2). A text BERT has a learned second segment, so
the mark needs no new parameter and no change to the encoder.

Candidates are the boxes of one provenance in the split's feature store
(``ground_truth``: the annotated objects, ``detected``: the detector's), r0
excluded; a candidate is a positive when its IoU with any of the boxes of the
phrase's entity (chain) reaches ``iou_threshold`` (0.5, the "any box"
protocol). A phrase whose entity has boxes but no candidate that close (the
detector missed it) is kept, counted, and always wrong.

Phrases without a box are not samples; each is counted in ``dropped`` (and so
in the run's ``data_report.json``) and in :attr:`PhraseGroundingDataset.excluded`:
``not_visual`` (chain 0 or type ``notvisual``), ``no_box`` (a visual entity
annotated only as scene or ``nobndbox``) and ``cut_off`` (the phrase lies past
the caption's truncation). Nothing is random.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from groundattn.data.boxes import box_iou
from groundattn.data.flickr30k import Caption, Flickr30kEntities
from groundattn.data.regions import select_regions
from groundattn.data.store import FeatureStore
from groundattn.data.text import tokenize_captions
from groundattn.errors import MissingFileError
from groundattn.tasks.common import TaskDataset
from groundattn.tasks.regions import RegionBatch, collate_regions

PHRASE_SEGMENT = 1  # the phrase's word pieces; the rest of the caption is segment 0

EXCLUDED = {
    "not_visual": "phrases not visual (chain 0 or type notvisual): no box",
    "no_box": "phrases whose entity has no box (scene or nobndbox only)",
    "cut_off": "phrases cut off whole by the caption's truncation",
}


@dataclass
class PhraseGroundingBatch(RegionBatch):
    """A collated batch; targets (IoU >= threshold with a box of the phrase's entity) are in
    sequence positions of ``inputs``, the phrase's tokens have segment 1."""

    phrase_ids: Tensor  # (B,) long: the sample's index in its dataset


@dataclass(frozen=True)
class PhraseSample:
    """Where a sample comes from: an image, a caption of it, a phrase of that caption."""

    image_id: str
    caption: int
    phrase: int
    chain_id: str
    text: str
    token_span: tuple[int, int]  # word pieces [start, end) of the caption, no [CLS]


class PhraseGroundingDataset(TaskDataset):
    """The phrases with a box of one split of a Flickr30k Entities root with ``features/``.

    Args:
        root: the data set root (``Sentences/``, ``Annotations/``, ``<split>.txt``,
            ``features/<split>.h5``).
        split: the split file's name.
        boxes: ``"ground_truth"`` or ``"detected"`` candidates.
        max_phrases: the first phrases only (after the exclusions), e.g. for a quick validation.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        tokenizer,
        *,
        boxes: str = "detected",
        max_regions: int | None = None,
        max_caption_tokens: int = 32,
        iou_threshold: float = 0.5,
        max_phrases: int | None = None,
    ):
        super().__init__()
        if boxes not in ("ground_truth", "detected"):
            raise ValueError(f"boxes must be 'ground_truth' or 'detected', got {boxes!r}")
        root = Path(root)
        entities = Flickr30kEntities(root)
        if split not in entities.splits:
            raise MissingFileError(
                f"{root}: no split file {split}.txt (found: {sorted(entities.splits)})"
            )
        self.store = FeatureStore(root / "features" / f"{split}.h5")
        self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.excluded = dict.fromkeys(EXCLUDED, 0)
        self.samples: list[PhraseSample] = []
        self.targets: list[list[bool]] = []
        self.captions: dict[tuple[str, int], list[int]] = {}  # (image, caption) → word pieces
        self.images: dict[str, tuple[np.ndarray, Tensor]] = {}  # store rows, normalised boxes
        for image_id in entities.splits[split]:
            if max_phrases is not None and len(self.samples) >= max_phrases:
                break  # a cap, not a loss: the images after it are not read
            self._add_image(
                entities.captions(image_id),
                entities.annotation(image_id).boxes,
                image_id,
                tokenizer,
                boxes=boxes,
                max_regions=max_regions,
                max_tokens=max_caption_tokens,
                iou_threshold=iou_threshold,
            )
        self.samples, self.targets = self.samples[:max_phrases], self.targets[:max_phrases]
        for key, count in self.excluded.items():
            self.drop(EXCLUDED[key], count)

    def _add_image(
        self,
        captions: list[Caption],
        chain_boxes: dict[str, list],
        image_id: str,
        tokenizer,
        *,
        boxes: str,
        max_regions: int | None,
        max_tokens: int,
        iou_threshold: float,
    ) -> None:
        """The samples of one image's phrases with a box, with their targets."""
        selected = select_regions(self.store.layout(image_id), boxes, max_regions)
        self.images[image_id] = (selected.store_rows, torch.from_numpy(selected.normalized_boxes))
        positives: dict[str, list[bool]] = {}  # chain → target per region
        for c, tokenized in enumerate(tokenize_captions(tokenizer, captions, max_tokens)):
            self.captions[image_id, c] = tokenized.token_ids
            for p, (phrase, span) in enumerate(
                zip(captions[c].phrases, tokenized.phrase_spans, strict=True)
            ):
                chain = phrase.chain_id
                if not phrase.is_visual:
                    self.excluded["not_visual"] += 1
                elif not chain_boxes.get(chain):
                    self.excluded["no_box"] += 1
                elif span is None:
                    self.excluded["cut_off"] += 1
                else:
                    if chain not in positives:
                        truth = np.asarray(chain_boxes[chain], np.float32)  # (K, 4)
                        hit = (box_iou(selected.boxes, truth) >= iou_threshold).any(1)  # (R,)
                        hit[0] = False  # r0 is never a candidate
                        positives[chain] = hit.tolist()
                    self.samples.append(PhraseSample(image_id, c, p, chain, phrase.text, span))
                    self.targets.append(positives[chain])

    @property
    def answerable(self) -> float:
        """Fraction of samples with at least one positive candidate: the recall's ceiling."""
        return sum(any(t) for t in self.targets) / max(1, len(self.targets))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        rows, boxes = self.images[sample.image_id]
        caption = self.captions[sample.image_id, sample.caption]
        start, end = sample.token_span
        segments = [0] * (len(caption) + 2)
        segments[1 + start : 1 + end] = [PHRASE_SEGMENT] * (end - start)  # after [CLS]
        return {
            "token_ids": [self.cls_id, *caption, self.sep_id],
            "segment_ids": segments,
            "features": torch.from_numpy(self.store.features(sample.image_id, rows)),
            "boxes": boxes,
            "targets": self.targets[index],
            "phrase_id": index,
        }


def collate_phrase_grounding(samples: list[dict]) -> PhraseGroundingBatch:
    """Packs samples in the VL-BERT layout, phrase tokens in segment 1, targets at region positions."""
    inputs, targets = collate_regions(samples)
    return PhraseGroundingBatch(
        inputs=inputs,
        targets=targets,
        phrase_ids=torch.tensor([s["phrase_id"] for s in samples]),
    )
