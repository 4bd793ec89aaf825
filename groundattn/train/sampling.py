"""A resumable, deterministic order of global batches, sharded over processes."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this process's share of each global batch of one epoch.

    The epoch's order is a permutation drawn from ``(seed, epoch)`` alone, so
    every process, and a run resumed at any batch, sees the same global
    batches. Process ``rank`` of ``world`` takes ``batch[rank::world]``; the
    last incomplete global batch is dropped so every step has the same size.
    """

    def __init__(self, size: int, batch_size: int, *, seed: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(
                f"global batch size {batch_size} is not divisible by {world} processes"
            )
        if size < batch_size:
            raise ValueError(f"{size} samples cannot fill one batch of {batch_size}")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world = rank, world
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start_batch: int) -> None:
        """Starts the next iteration at global batch ``start_batch`` of ``epoch``."""
        self.epoch, self.start = epoch, start_batch

    def __len__(self) -> int:
        return self.size // self.batch_size - self.start

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=g)
        for b in range(self.start, self.size // self.batch_size):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield batch[self.rank :: self.world].tolist()
