"""What every task module shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

import torch
from torch import Tensor
from torch.utils.data import Dataset

from groundattn.model import VLBatch


class TaskDataset(Dataset):
    """Base of the task datasets: ``dropped`` counts what the data held and they left out.

    ``dropped`` maps a reason (a sentence naming the rows, e.g. "VGP rows with HTML
    remnants in a phrase") to a count; the run writes it to ``data_report.json``.
    """

    def __init__(self) -> None:
        self.dropped: dict[str, int] = {}

    def drop(self, reason: str, count: int = 1) -> None:
        """Counts ``count`` items left out for ``reason`` (0 counts nothing)."""
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + count

    def encode(self, tokenizer, texts: list[str], max_tokens: int, what: str) -> list[list[int]]:
        """Word pieces of ``texts`` (no special tokens), each cut to ``max_tokens``; cuts are counted."""
        token_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        self.drop(
            f"{what} cut to {max_tokens} word pieces (their tail left out)",
            sum(len(ids) > max_tokens for ids in token_ids),
        )
        return [ids[:max_tokens] for ids in token_ids]


class TaskBatch:
    """Base of the collated batch dataclasses: ``inputs`` plus task tensors."""

    inputs: VLBatch

    def to(self, device) -> TaskBatch:
        """The batch with every tensor on ``device``."""
        return type(self)(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return len(self.inputs)


def global_mean(
    local_mean: Tensor, local_count: Tensor, sum_over_processes: Callable[[Tensor], Tensor] | None
) -> Tensor:
    """Turns a mean over this process's share into its share of the global-batch mean.

    Each process's loss becomes ``sum_local / count_global · world``: data-parallel
    training averages the processes' gradients, so the update equals a single
    process's on the whole batch whatever the count (masked tokens, candidate
    regions) in each share. Without ``sum_over_processes`` (one process) the mean
    is returned as it is.
    """
    if sum_over_processes is None:
        return local_mean
    count = local_count.to(local_mean.dtype)
    world = sum_over_processes(torch.ones((), device=count.device))
    return local_mean * count / sum_over_processes(count.detach()).clamp_min(1) * world
