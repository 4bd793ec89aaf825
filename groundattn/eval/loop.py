"""The evaluation loop: a task's validation counts and exact loss means over batches.

The trainer (sharded over processes), ``groundattn evaluate`` and the experiment
all read a task through :func:`validation_sums`, then its ``summarize`` and
:func:`~groundattn.tasks.common.loss_means` turn the sums into metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import Tensor

from groundattn.tasks.common import Task, TaskBatch, loss_means


@torch.no_grad()
def validation_sums(
    task: Task,
    batches: Iterable[TaskBatch],
    device: torch.device,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """The task's validation counts and loss sums (:meth:`TaskOutput.sums`), each summed
    over ``batches``, and the weight of each loss part. The task runs in eval mode and
    gets its mode back."""
    totals: dict[str, Tensor] = {}
    weights: dict[str, float] = {}
    training = task.training
    task.eval()
    try:
        for batch in batches:
            with autocast():
                output, counts = task.validate(batch.to(device))
            for key, value in {**counts, **output.sums()}.items():
                totals[key] = totals.get(key, 0) + value
            weights.update({name: part.weight for name, part in output.parts.items()})
    finally:
        task.train(training)
    return totals, weights


def metrics_of(
    totals: dict[str, Tensor],
    weights: dict[str, float],
    summarize: Callable[[dict[str, Tensor]], dict[str, float]],
) -> dict[str, float]:
    """The task's metrics and its validation losses from summed counts."""
    return {**summarize(totals), **loss_means(totals, weights)}
