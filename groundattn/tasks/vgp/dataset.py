"""VGP fine-tuning samples (METHOD §3): two captions, the image, and their grounding.

Each item is an image and an unordered pair of two of its captions. At every
epoch the item draws, from ``(seed, epoch, index)`` alone (so a resumed run and
any number of DataLoader workers see the same samples):

- the order of the two captions;
- its identification class: 0 both captions describe the image (half of the
  samples), 1 only c1 does, 2 only c2 does (a quarter each); the caption that
  does not is one of the captions of another image, the nearest image by
  whole-image features (``negatives="hard"``, after Lu et al. 2019) or a
  random one;
- nothing else: phrase pairs and grounding follow from the captions.

Grounding: every word piece of a visual phrase of a caption that describes the
image is grounded to the regions of its chain (:func:`ground_chains`); phrases
of the negative caption are grounded to nothing. VGP phrase pairs come from
the VGP CSV (positives only); swapping the captions swaps classes 1 and 2.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from groundattn.data.errors import FormatError
from groundattn.data.flickr30k import Flickr30kEntities
from groundattn.data.regions import RegionSource, ground_chains, select_regions
from groundattn.data.store import FeatureStore
from groundattn.data.text import tokenize_captions
from groundattn.data.vgp import (
    CONFLICTING_ROWS,
    UNMATCHED_ROWS,
    match_pairs,
    read_vgp_csv,
    screen_records,
    swap_label,
)
from groundattn.errors import MissingFileError
from groundattn.model import VLBatch, pack
from groundattn.model.inputs import grounding_mask, pad_stack, slot_mask, span_mask
from groundattn.tasks.common import TaskBatch, TaskDataset

log = logging.getLogger(__name__)

CAPTION_PAIRS = [(i, j) for i in range(5) for j in range(i + 1, 5)]  # 10 unordered pairs
ID_PROBABILITIES = (0.5, 0.25, 0.25)  # both / only c1 / only c2


@dataclass(frozen=True)
class _EncodedCaption:
    token_ids: list[int]
    phrases: list[tuple[tuple[int, int], list[int]]]  # (token span, region slots) per kept phrase
    phrase_index: dict[int, int]  # caption phrase index → index in ``phrases``


@dataclass
class VGPBatch(TaskBatch):
    """A collated VGP batch; every tensor is in sequence positions of ``inputs``."""

    inputs: VLBatch
    grounding: Tensor  # (B, N, N) bool
    phrase_mask: Tensor  # (B, P, N) bool: tokens of each phrase
    phrase_regions: Tensor  # (B, P, N) bool: region positions of each phrase's chain
    pairs: Tensor  # (B, K, 3) long: phrase index 1, phrase index 2, VGP class; -100 padding
    id_labels: Tensor  # (B,) long


TRUNCATED_PAIRS = "VGP pairs with a phrase cut off by truncation"
BOXLESS = "visual phrases whose entity has no box (e.g. scenes; no grounding)"


class VGPDataset(TaskDataset):
    """VGP samples of one split of a Flickr30k Entities root with ``vgp/`` and ``features/``."""

    def __init__(
        self,
        root: str | Path,
        split: str,
        tokenizer,
        *,
        max_caption_tokens: int = 32,
        negatives: str = "hard",
        regions: RegionSource = "ground_truth",
        max_regions: int | None = None,
        max_images: int | None = None,
        iou_threshold: float = 0.5,
        seed: int = 0,
    ):
        super().__init__()
        root = Path(root)
        entities = Flickr30kEntities(root)
        if split not in entities.splits:
            raise MissingFileError(
                f"{root}: no split file {split}.txt (found: {sorted(entities.splits)})"
            )
        if negatives not in ("hard", "random"):
            raise ValueError(f"negatives must be 'hard' or 'random', got {negatives!r}")
        self.image_ids = entities.splits[split][:max_images]
        self.store = FeatureStore(root / "features" / f"{split}.h5")
        self.cls_id, self.sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.negatives, self.seed, self.epoch = negatives, seed, 0
        self.iou_threshold = iou_threshold
        captions = {i: entities.captions(i) for i in self.image_ids}
        for i, caps in captions.items():
            if len(caps) != 5:
                raise FormatError(
                    root / "Sentences" / f"{i}.txt",
                    f"expected 5 captions (one a line), found {len(caps)}",
                )
        matched = self._read_pairs(
            root / "vgp" / f"{split}.csv", set(entities.splits[split]), captions
        )
        flat = [c for i in self.image_ids for c in captions[i]]
        tokenized = tokenize_captions(tokenizer, flat, max_caption_tokens)
        self.drop(
            f"phrases cut off whole by truncation to {max_caption_tokens} word pieces",
            sum(t.dropped_phrases for t in tokenized),
        )
        self.rows, self.boxes, self.captions, self.pairs = [], [], [], []
        only_r0 = []
        for n, image_id in enumerate(self.image_ids):
            selected = select_regions(self.store.layout(image_id), regions, max_regions)
            if len(selected) == 1:
                only_r0.append(image_id)
            chain_boxes = entities.annotation(image_id).boxes
            grounded = ground_chains(chain_boxes, selected, iou_threshold)
            self.rows.append(selected.store_rows)
            self.boxes.append(torch.from_numpy(selected.normalized_boxes))
            caps = [
                self._encode_caption(caption, tok, grounded, chain_boxes)
                for caption, tok in zip(
                    captions[image_id], tokenized[5 * n : 5 * n + 5], strict=True
                )
            ]
            self.captions.append(caps)
            self.pairs.append(self._pairs(matched, image_id, captions[image_id], caps))
        if len(only_r0) == len(self.image_ids):
            raise FormatError(
                self.store.path,
                f"no image of split {split!r} has a {regions!r} box, only the whole image r0 "
                f"(a bottom-up store holds detected boxes: set data.regions=detected)",
            )
        self.drop(f"images with no {regions!r} box (r0 alone)", len(only_r0))
        self.nearest = self._nearest_images() if negatives == "hard" else None

    def _read_pairs(self, vgp_csv: Path, split_images: set[int], captions: dict):
        """The split's VGP rows matched to caption phrases (None without a VGP CSV);
        screened and unmatched rows are counted as dropped."""
        if not vgp_csv.is_file():
            log.warning("%s: no VGP pairs; VGP classification gets no examples", vgp_csv)
            return None
        records, dropped = screen_records(read_vgp_csv(vgp_csv), split_images)
        for reason, count in dropped.items():
            self.drop(reason, count)
        kept_images = set(self.image_ids)  # max_images: a cap, not a loss
        matched = match_pairs([r for r in records if r.image_id in kept_images], captions)
        self.drop(UNMATCHED_ROWS, len(matched.unmatched))
        self.drop(CONFLICTING_ROWS, len(matched.conflicts))
        return matched

    def _encode_caption(self, caption, tok, grounded: dict, chain_boxes: dict) -> _EncodedCaption:
        """A caption's word pieces and its visual phrases (kept when not cut off) with the
        region slots of their chain; phrases without grounding are counted."""
        kept, index = [], {}
        for p, (phrase, span) in enumerate(zip(caption.phrases, tok.phrase_spans, strict=True)):
            if span is None or not phrase.is_visual:
                continue
            index[p] = len(kept)
            kept.append((span, grounded.get(phrase.chain_id, [])))
            if phrase.chain_id not in grounded:
                has_box = len(chain_boxes.get(phrase.chain_id, ())) > 0
                ungrounded = (
                    f"visual phrases with no region of IoU >= {self.iou_threshold} to their boxes "
                    "(trained with no grounding)"
                )
                self.drop(ungrounded if has_box else BOXLESS)
        return _EncodedCaption(tok.token_ids, kept, index)

    def _pairs(self, matched, image_id: int, captions: list, caps: list[_EncodedCaption]) -> dict:
        """(caption i, caption j) → [(phrase of i, phrase of j, VGP class)] for the kept phrases."""
        pairs = {}
        for i, j in CAPTION_PAIRS:
            phrase_pairs = matched.pairs_for(image_id, i, j) if matched else []
            phrases_i, phrases_j = captions[i].phrases, captions[j].phrases
            pairs[i, j] = [
                (
                    caps[i].phrase_index[phrases_i.index(pp.phrase1)],
                    caps[j].phrase_index[phrases_j.index(pp.phrase2)],
                    int(pp.label),
                )
                for pp in phrase_pairs
                if phrases_i.index(pp.phrase1) in caps[i].phrase_index
                and phrases_j.index(pp.phrase2) in caps[j].phrase_index
            ]
            self.drop(TRUNCATED_PAIRS, len(phrase_pairs) - len(pairs[i, j]))
        return pairs

    def _nearest_images(self) -> np.ndarray:
        """Index of the visually nearest other image (cosine of whole-image features)."""
        whole = np.stack(
            [
                self.store.features(i, rows[:1])[0]
                for i, rows in zip(self.image_ids, self.rows, strict=True)
            ]
        )
        whole = whole / np.linalg.norm(whole, axis=1, keepdims=True).clip(1e-8)
        sim = whole @ whole.T  # (I, I)
        np.fill_diagonal(sim, -np.inf)
        return sim.argmax(1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.image_ids) * len(CAPTION_PAIRS)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, pair = divmod(index, len(CAPTION_PAIRS))
        i, j = CAPTION_PAIRS[pair]
        swap = bool(rng.integers(2))
        label = int(rng.choice(3, p=ID_PROBABILITIES))
        first, second = (j, i) if swap else (i, j)
        c1, c2 = self.captions[image][first], self.captions[image][second]
        pairs = []
        if label == 0:
            pairs = self.pairs[image][min(i, j), max(i, j)]
            if swap:  # phrase1 now lies in c2: swap the pair and its class
                pairs = [(b, a, int(swap_label(c))) for a, b, c in pairs]
        else:
            other = (
                int(self.nearest[image])
                if self.nearest is not None
                else int(rng.integers(len(self.image_ids) - 1))
            )
            if self.nearest is None and other >= image:
                other += 1
            negative = self.captions[other][int(rng.integers(5))]
            negative = _EncodedCaption(
                negative.token_ids, [(span, []) for span, _ in negative.phrases], {}
            )
            c1, c2 = (c1, negative) if label == 1 else (negative, c2)
        token_ids = [self.cls_id, *c1.token_ids, self.sep_id, *c2.token_ids, self.sep_id]
        segments = [0] * (len(c1.token_ids) + 2) + [1] * (len(c2.token_ids) + 1)
        offset2 = len(c1.token_ids) + 2
        phrases = [((s + 1, e + 1), slots) for (s, e), slots in c1.phrases]
        phrases += [((s + offset2, e + offset2), slots) for (s, e), slots in c2.phrases]
        pairs = [(a, b + len(c1.phrases), c) for a, b, c in pairs]
        rows = self.rows[image]
        return {
            "token_ids": token_ids,
            "segment_ids": segments,
            "features": torch.from_numpy(self.store.features(self.image_ids[image], rows)),
            "boxes": self.boxes[image],
            "spans": [span for span, _ in phrases],
            "slots": [slots for _, slots in phrases],
            "grounding": [(t, r) for (s, e), slots in phrases for t in range(s, e) for r in slots],
            "pairs": pairs,
            "label": label,
        }


def collate_vgp(samples: list[dict]) -> VGPBatch:
    """Packs VGP samples in the VL-BERT layout (see :func:`groundattn.model.pack`)."""
    inputs = pack(
        [s["token_ids"] for s in samples],
        [s["segment_ids"] for s in samples],
        [s["features"] for s in samples],
        [s["boxes"] for s in samples],
    )
    phrase_mask = span_mask(inputs, [s["spans"] for s in samples])
    return VGPBatch(
        inputs=inputs,
        grounding=grounding_mask(inputs, [s["grounding"] for s in samples]),
        phrase_mask=phrase_mask,
        phrase_regions=slot_mask(inputs, [s["slots"] for s in samples], phrase_mask.shape[1]),
        pairs=pad_stack([s["pairs"] for s in samples], 3),
        id_labels=torch.tensor([s["label"] for s in samples]),
    )
