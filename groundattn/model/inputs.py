"""The encoder's input: sequences in the VL-BERT layout, packed per sample.

Each sample is laid out seamlessly, ``[CLS] c1 [SEP] c2 [SEP] r0 r1 … rK [END]``
followed by padding up to the batch's longest sample. Sequence positions of
text and regions therefore differ from sample to sample: every consumer
locates them through the masks carried here (METHOD §6, defect 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

# Segment of region tokens and [END] (METHOD §2).
IMAGE_SEGMENT = 2


@dataclass
class VLBatch:
    """A padded batch for :class:`~groundattn.model.VLEncoder`."""

    input_ids: Tensor  # (B, N) long; pad id outside text
    segment_ids: Tensor  # (B, N) long
    position_ids: Tensor  # (B, N) long
    text_mask: Tensor  # (B, N) bool, [CLS]/[SEP] included
    region_mask: Tensor  # (B, N) bool, r0 included
    end_mask: Tensor  # (B, N) bool, the [END] token
    region_features: Tensor  # (B, R, F) float
    region_boxes: Tensor  # (B, R, 4) float, x1 y1 x2 y2 divided by image width/height
    region_valid: Tensor  # (B, R) bool

    @property
    def valid_mask(self) -> Tensor:
        """(B, N) bool: every real token (text, regions, [END]); False on padding."""
        return self.text_mask | self.region_mask | self.end_mask

    @property
    def text_lengths(self) -> Tensor:
        """(B,) long: text tokens per sample; region k of sample b sits at T_b + k."""
        return self.text_mask.sum(-1)

    @property
    def candidate_mask(self) -> Tensor:
        """(B, N) bool: every region position but r0 (what region-scoring tasks choose among)."""
        return self.region_mask & (self.region_mask.cumsum(-1) > 1)

    def region_positions(self) -> Tensor:
        """(B, R) long: sequence position of each region slot (padding slots point past)."""
        R = self.region_valid.shape[1]
        return self.text_lengths[:, None] + torch.arange(R, device=self.text_mask.device)

    def to(self, device: torch.device | str) -> VLBatch:
        return VLBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def pack(
    token_ids: Sequence[Sequence[int]],
    segment_ids: Sequence[Sequence[int]],
    region_features: Sequence[Tensor],
    region_boxes: Sequence[Tensor],
    *,
    pad_token_id: int = 0,
) -> VLBatch:
    """Lays out a list of samples in the VL-BERT layout.

    Args:
        token_ids: per sample, the word-piece ids of ``[CLS] c1 [SEP] c2 [SEP]``.
        segment_ids: per sample, the segment (0 or 1) of each text token.
        region_features: per sample, (R_b, F) features, the whole image r0 first.
            R_b may be 0 (text alone: no region, no [END]).
        region_boxes: per sample, (R_b, 4) boxes x1 y1 x2 y2 normalised to [0, 1].
    """
    B = len(token_ids)
    if not (len(segment_ids) == len(region_features) == len(region_boxes) == B):
        raise ValueError(
            "pack: token_ids, segment_ids, region_features and region_boxes differ in length"
        )
    for b in range(B):
        if len(token_ids[b]) != len(segment_ids[b]):
            raise ValueError(
                f"pack: sample {b} has {len(token_ids[b])} tokens but {len(segment_ids[b])} segments"
            )
        if region_features[b].shape[0] != region_boxes[b].shape[0]:
            raise ValueError(f"pack: sample {b} has different numbers of region features and boxes")
    T = torch.tensor([len(t) for t in token_ids])  # (B,)
    R = torch.tensor([f.shape[0] for f in region_features])  # (B,)
    has_end = R > 0
    N = int((T + R + has_end.long()).max())
    R_max = int(R.max()) if B else 0
    F = region_features[0].shape[1] if B else 0

    idx = torch.arange(N)[None, :]  # (1, N)
    text_mask = idx < T[:, None]  # (B, N)
    region_mask = (idx >= T[:, None]) & (idx < (T + R)[:, None])  # (B, N)
    end_mask = (idx == (T + R)[:, None]) & has_end[:, None]  # (B, N)

    input_ids = torch.full((B, N), pad_token_id, dtype=torch.long)
    input_ids[text_mask] = torch.tensor([i for t in token_ids for i in t], dtype=torch.long)
    segments = torch.full((B, N), IMAGE_SEGMENT, dtype=torch.long)
    segments[text_mask] = torch.tensor([s for seg in segment_ids for s in seg], dtype=torch.long)
    segments[~(text_mask | region_mask | end_mask)] = 0
    # Text 0, 1, …; every region shares the next position; [END] the one after (METHOD §2).
    position_ids = torch.where(text_mask, idx, T[:, None])
    position_ids = torch.where(end_mask, T[:, None] + 1, position_ids)
    position_ids = torch.where(text_mask | region_mask | end_mask, position_ids, 0)  # (B, N)

    slot = torch.arange(R_max)[None, :]  # (1, R)
    region_valid = slot < R[:, None]  # (B, R)
    features = torch.zeros(B, R_max, F)
    boxes = torch.zeros(B, R_max, 4)
    if R_max:  # one padded copy (a concatenation then a masked copy is twice the traffic)
        features = pad_sequence([f.float() for f in region_features], batch_first=True)
        boxes = pad_sequence([b.float() for b in region_boxes], batch_first=True)
    return VLBatch(
        input_ids=input_ids,
        segment_ids=segments,
        position_ids=position_ids,
        text_mask=text_mask,
        region_mask=region_mask,
        end_mask=end_mask,
        region_features=features,
        region_boxes=boxes,
        region_valid=region_valid,
    )


# ---- batch tensors from per-sample index lists, without loops over tokens -------------------
# Samples describe grounding and spans in their own coordinates (text token index, region
# slot); these helpers turn them into (B, N, N) and (B, P, N) masks in sequence positions of a
# packed VLBatch.


def _flatten(per_sample: Sequence[Sequence[Sequence[int]]], width: int) -> Tensor:
    """Per sample lists of ``width``-tuples → (M, 1 + width) long rows ``(b, *tuple)``."""
    rows = [(b, *item) for b, items in enumerate(per_sample) for item in items]
    if not rows:
        return torch.zeros(0, 1 + width, dtype=torch.long)
    return torch.tensor(rows, dtype=torch.long)


def grounding_mask(batch: VLBatch, pairs: Sequence[Sequence[tuple[int, int]]]) -> Tensor:
    """(B, N, N) bool from per-sample ``(text token index, region slot)`` pairs."""
    B, N = batch.input_ids.shape
    grounding = torch.zeros(B, N, N, dtype=torch.bool)
    idx = _flatten(pairs, 2)  # (M, 3): b, i, slot
    if len(idx):
        if (idx[:, 2] >= batch.region_valid.sum(1)[idx[:, 0]]).any():
            raise ValueError("a grounding pair names a region slot the sample does not have")
        j = batch.text_lengths[idx[:, 0]] + idx[:, 2]  # region slot → sequence position
        grounding[idx[:, 0], idx[:, 1], j] = True
    return grounding


def span_mask(batch: VLBatch, spans: Sequence[Sequence[tuple[int, int]]]) -> Tensor:
    """(B, P, N) bool from per-sample text spans ``[start, end)``; P is the batch maximum."""
    B, N = batch.input_ids.shape
    P = max((len(s) for s in spans), default=0)
    mask = torch.zeros(B, P, N, dtype=torch.bool)
    idx = _flatten([[(p, s, e) for p, (s, e) in enumerate(items)] for items in spans], 3)  # (M, 4)
    if len(idx):
        pos = torch.arange(N)
        inside = (pos >= idx[:, 2:3]) & (pos < idx[:, 3:4])  # (M, N)
        mask[idx[:, 0], idx[:, 1]] = inside
    return mask


def slot_mask(batch: VLBatch, slots: Sequence[Sequence[Sequence[int]]], P: int) -> Tensor:
    """(B, P, N) bool marking, for item p of sample b, the positions of its region slots."""
    B, N = batch.input_ids.shape
    mask = torch.zeros(B, P, N, dtype=torch.bool)
    idx = _flatten([[(p, s) for p, item in enumerate(items) for s in item] for items in slots], 2)
    if len(idx):
        mask[idx[:, 0], idx[:, 1], batch.text_lengths[idx[:, 0]] + idx[:, 2]] = True
    return mask


def pad_stack(rows: Sequence[Sequence[Sequence[int]]], width: int, fill: int = -100) -> Tensor:
    """Per-sample lists of ``width``-tuples → (B, K, width) long, padded with ``fill``."""
    K = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), K, width), fill, dtype=torch.long)
    idx = _flatten([[(k, *item) for k, item in enumerate(items)] for items in rows], 1 + width)
    if len(idx):
        out[idx[:, 0], idx[:, 1]] = idx[:, 2:]
    return out
