"""The VGP data pipeline against the training step it feeds.

    .venv/bin/python benchmarks/vgp_pipeline.py --data data/scenes [--steps 10] [--device cpu]

Prints, measured in one run on the embedded default data, batch 32, MiniLM-L6
with direct supervision:
- the loader alone (2 workers): batches/s, against the bare training step
  (target: loader ≥ 5× faster than a step consumes);
- the real VGP step with data loading included against the bare step on a
  batch already in memory (target ≥ 0.9×).
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from common import table
from torch.utils.data import DataLoader

from groundattn.data.store import FeatureStore
from groundattn.model import from_pretrained, load_tokenizer
from groundattn.tasks.vgp import VGPDataset, VGPTask, collate_vgp
from groundattn.tasks.vgp.supervision import Direct


def rate(iterable, count: int) -> float:
    """Items per second over ``count`` items, after one warm-up item."""
    it = iter(iterable)
    next(it)
    start = time.perf_counter()
    for _ in itertools.islice(it, count):
        pass
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/scenes")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    dataset = VGPDataset(args.data, "train", load_tokenizer(), max_caption_tokens=24)
    with FeatureStore(f"{args.data}/features/train.h5") as store:
        feature_dim = store.feature_dim
    encoder, _ = from_pretrained(visual_feature_dim=feature_dim)
    task = VGPTask(encoder, Direct()).to(device).train()
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-5, fused=True)

    def loader():
        g = torch.Generator().manual_seed(0)
        return DataLoader(
            dataset,
            batch_size=args.batch,
            shuffle=True,
            generator=g,
            collate_fn=collate_vgp,
            num_workers=args.workers,
            prefetch_factor=4,
            persistent_workers=False,
        )

    def train_step(batch) -> None:
        loss, _ = task(batch.to(device)).loss()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    loader_rate = rate(loader(), args.steps * 3)  # batches/s, nothing else running
    fixed = next(iter(loader()))
    bare_rate = rate((train_step(fixed) for _ in itertools.count()), args.steps)  # steps/s
    real_rate = rate((train_step(b) for b in loader()), args.steps)  # steps/s, loading included

    print(
        f"VGP, MiniLM-L6, direct supervision, batch {args.batch}, {args.workers} workers, device {device}"
    )
    print(
        table(
            [
                [
                    "loader alone",
                    f"{loader_rate:.1f}",
                    f"{loader_rate * args.batch:.0f}",
                    f"{loader_rate / bare_rate:.1f}x the step (target >= 5x)",
                ],
                [
                    "bare step (batch in memory)",
                    f"{bare_rate:.2f}",
                    f"{bare_rate * args.batch:.1f}",
                    "1.00",
                ],
                [
                    "real step (loading included)",
                    f"{real_rate:.2f}",
                    f"{real_rate * args.batch:.1f}",
                    f"{real_rate / bare_rate:.2f} of bare (target >= 0.9)",
                ],
            ],
            ["", "batches/s", "samples/s", "ratio"],
        )
    )


if __name__ == "__main__":
    main()
