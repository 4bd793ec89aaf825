"""Small batches in the VL-BERT layout for model tests."""

import torch

from groundattn.model import EncoderConfig, VLBatch, pack


def mixed_batch(
    config: EncoderConfig, text_lengths=(5, 9, 3), region_counts=(4, 2, 6), keep=None
) -> VLBatch:
    """Samples with different text lengths and region counts; ``keep`` selects some of them."""
    g = torch.Generator().manual_seed(0)
    tokens, segments, features, boxes = [], [], [], []
    for T, R in zip(text_lengths, region_counts, strict=True):
        ids = torch.randint(1000, 2000, (T,), generator=g).tolist()
        ids[0], ids[-1] = 101, 102
        split = T // 2
        tokens.append(ids)
        segments.append([0] * split + [1] * (T - split))
        features.append(torch.randn(R, config.visual_feature_dim, generator=g))
        xy = torch.rand(R, 2, generator=g) * 0.5
        boxes.append(torch.cat([xy, xy + 0.1 + torch.rand(R, 2, generator=g) * 0.4], -1))
    keep = range(len(tokens)) if keep is None else keep
    return pack(*([x[i] for i in keep] for x in (tokens, segments, features, boxes)))
