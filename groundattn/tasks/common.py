"""What every task module shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from groundattn.model import VLBatch

SumOverProcesses = Callable[[Tensor], Tensor]


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
    local_mean: Tensor, local_count: Tensor, sum_over_processes: SumOverProcesses | None
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


@dataclass(frozen=True)
class LossPart:
    """One term of a task's loss: its mean over this process's items, how many, its weight.

    The items are what the term averages: samples, masked tokens, candidate regions,
    phrase pairs, supervised attention rows. Their count turns the local mean into the
    global batch's (:func:`global_mean`) and validation means into exact ones.
    """

    mean: Tensor  # () float
    count: Tensor  # () long
    weight: float = 1.0


@dataclass
class TaskOutput:
    """What a task returns for a batch: its named loss parts (the training loss is their
    weighted sum)."""

    parts: dict[str, LossPart]

    def loss(self, sum_over_processes: SumOverProcesses | None = None) -> tuple[Tensor, dict]:
        """The weighted sum of the parts' global-batch means, and (detached) ``loss`` and,
        where there are several parts, each as ``loss_<part>`` for the log.

        ``sum_over_processes`` sums a tensor over the data-parallel processes (None: one).
        """
        total, logged = None, {}
        for name, part in self.parts.items():
            mean = global_mean(part.mean, part.count, sum_over_processes)
            logged[f"loss_{name}"] = mean.detach()
            term = part.weight * mean
            total = term if total is None else total + term
        if total is None:
            raise ValueError("a task returned no loss part")
        return total, {"loss": total.detach(), **(logged if len(logged) > 1 else {})}

    def sums(self) -> dict[str, Tensor]:
        """Each part's sum and count (``loss_<part>``, ``loss_<part>_count``): additive over
        batches and processes, like validation counts (:func:`loss_means` divides them)."""
        out = {}
        for name, part in self.parts.items():
            out[f"loss_{name}"] = part.mean.detach().double() * part.count
            out[f"loss_{name}_count"] = part.count.detach()
        return out


def loss_means(sums: dict[str, Tensor], weights: dict[str, float]) -> dict[str, float]:
    """``val_loss``, the weighted sum of the parts' exact means over every item, and (where
    there are several) each as ``val_loss_<part>``, from the summed :meth:`TaskOutput.sums`;
    ``weights`` maps each part to its weight."""
    means = {
        name: float(sums[f"loss_{name}"] / sums[f"loss_{name}_count"].clamp_min(1))
        for name in weights
    }
    parts = {f"val_loss_{name}": mean for name, mean in means.items()} if len(means) > 1 else {}
    return {"val_loss": sum(weights[name] * mean for name, mean in means.items()), **parts}


class Task(nn.Module, ABC):
    """The contract of every task: :meth:`forward` for training, :meth:`validate` for counts.

    Nothing is set on a task from outside: the trainer turns the returned local means
    into global-batch means (:meth:`TaskOutput.loss`), and sums validation counts over
    batches and processes before the task's ``summarize`` reads them.
    """

    @abstractmethod
    def forward(self, batch: TaskBatch) -> TaskOutput:
        """The loss parts of a training batch."""

    @abstractmethod
    def validate(self, batch: TaskBatch) -> tuple[TaskOutput, dict[str, Tensor]]:
        """The loss parts and the validation counts (sums over the batch's samples)."""
