"""One trainer for every task, on accelerate.

The task (:class:`~groundattn.tasks.common.Task`) returns its loss parts
(``forward``) and its validation counts (``validate``); the trainer turns the
parts into one global-batch loss and owns the optimisation (AdamW with decoupled weight decay, linear
warm-up then decay, clipping, accumulation, bf16 autocast on a GPU), the data
order, validation gathered over processes, logs (progress bar, TensorBoard,
JSONL) and crash-safe checkpoints.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from groundattn.config import ConfigError, OptimSection, RunSection
from groundattn.errors import NonFiniteError
from groundattn.eval.loop import metrics_of, validation_sums
from groundattn.tasks.common import Task
from groundattn.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from groundattn.train.sampling import GlobalBatchSampler

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    """What the trainer feeds: datasets, their collate and how to read validation counts."""

    train: Dataset
    val: Dataset | None
    collate: Callable[[list], Any]
    summarize: Callable[[dict[str, Tensor]], dict[str, float]]
    num_workers: int = 2


def make_accelerator(run: RunSection, grad_accum: int, cpu: bool | None = None) -> Accelerator:
    """The accelerator of a run: bf16 autocast on a GPU under ``auto``, fp32 on a CPU."""
    has_gpu = torch.cuda.is_available() if cpu is None else not cpu
    precision = {"auto": "bf16" if has_gpu else "no", "no": "no", "bf16": "bf16"}[
        run.mixed_precision
    ]
    # split_batches: the configured batch size is the global one, shared by the processes
    # (so the scheduler steps once per optimizer step, whatever the number of processes).
    return Accelerator(
        mixed_precision=precision,
        gradient_accumulation_steps=grad_accum,
        cpu=not has_gpu,
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )


def _param_groups(
    module: nn.Module, optim: OptimSection, new_parameters: frozenset[str]
) -> list[dict]:
    """AdamW groups: decay or not, and a learning rate: the first glob of ``optim.lr_by_name``
    that matches the name, else ``optim.lr`` (pretrained) or ``optim.new_lr`` (new).

    The parameters named in ``optim.freeze`` are switched off (``requires_grad``) and left out.
    """
    names = [name for name, _ in module.named_parameters()]
    for prefix in optim.freeze:
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            raise ConfigError(
                f"optim.freeze: {prefix!r} names no parameter of the model "
                f"(parameters start with {sorted({n.split('.')[0] for n in names})})"
            )
    for name, p in module.named_parameters():
        if any(name == prefix or name.startswith(prefix + ".") for prefix in optim.freeze):
            p.requires_grad_(False)
    trained = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    for glob in optim.lr_by_name:
        if any(fnmatch.fnmatchcase(name, glob) for name, _ in trained):
            continue
        found = (
            "only frozen parameters"
            if any(fnmatch.fnmatchcase(name, glob) for name in names)
            else f"no parameter of the model (e.g. {names[0]!r}, {names[-1]!r})"
        )
        raise ConfigError(f"optim.lr_by_name: {glob!r} matches {found}")
    new_lr = optim.new_lr if optim.new_lr is not None else optim.lr
    # keyed by (decays, new, lr): without lr_by_name, the groups of earlier checkpoints
    groups: dict[tuple[bool, bool, float], list[nn.Parameter]] = {}
    for name, p in trained:
        decays = not (p.ndim < 2 or "LayerNorm" in name or "embedding" in name.split(".")[-1])
        new = name in new_parameters
        lr = next(
            (lr for glob, lr in optim.lr_by_name.items() if fnmatch.fnmatchcase(name, glob)),
            new_lr if new else optim.lr,
        )
        groups.setdefault((decays, new, lr), []).append(p)
    return [
        {"params": params, "weight_decay": optim.weight_decay if decays else 0.0, "lr": lr}
        for (decays, _, lr), params in sorted(groups.items())
    ]


class Trainer:
    """Trains ``module`` on ``data``; writes everything under ``out_dir``."""

    def __init__(
        self,
        module: Task,
        data: TrainData,
        optim: OptimSection,
        run: RunSection,
        out_dir: Path,
        *,
        config: dict,
        accelerator: Accelerator | None = None,
        new_parameters: set[str] | frozenset[str] = frozenset(),
    ):
        """``new_parameters``: names (in ``module``) of the parameters that start
        from scratch rather than from pretrained weights; they train at
        ``optim.new_lr``."""
        self.data, self.optim_cfg, self.run, self.out_dir, self.config = (
            data,
            optim,
            run,
            Path(out_dir),
            config,
        )
        self.accelerator = accelerator or make_accelerator(run, optim.grad_accum)
        acc = self.accelerator
        set_seed(run.seed)
        self.sampler = GlobalBatchSampler(
            len(data.train),
            optim.batch_size,
            seed=run.seed,
            rank=acc.process_index,
            world=acc.num_processes,
        )
        self.batches_per_epoch = len(data.train) // optim.batch_size
        steps = optim.epochs * self.batches_per_epoch // optim.grad_accum
        self.total_steps = min(steps, optim.max_steps) if optim.max_steps else steps
        if self.total_steps < 1:
            raise ValueError(
                f"no optimizer step: {len(data.train)} samples, batch {optim.batch_size}, accumulation {optim.grad_accum}"
            )
        # The fused kernel: one pass over all parameters instead of one op per tensor.
        optimizer = torch.optim.AdamW(
            _param_groups(module, optim, frozenset(new_parameters)), lr=optim.lr, fused=True
        )
        scheduler = get_linear_schedule_with_warmup(
            optimizer, math.ceil(optim.warmup_ratio * self.total_steps), self.total_steps
        )
        # Loss parts become global-batch means (TaskOutput.loss) with this sum.
        self._sum_over_processes = (
            (lambda t: acc.reduce(t, reduction="sum")) if acc.num_processes > 1 else None
        )
        self.module, self.optimizer, self.scheduler = acc.prepare(module, optimizer, scheduler)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.history: list[dict] = []
        self._tb = None

    # ---- data -----------------------------------------------------------------------
    def _loader(self, dataset: Dataset, batch_sampler) -> DataLoader:
        workers = self.data.num_workers
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=self.data.collate,
            num_workers=workers,
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
            generator=torch.Generator(),  # never draws from the global RNG that checkpoints restore
        )

    # ---- logging ----------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        if not self.accelerator.is_main_process:
            return
        record = {"step": self.step, "epoch": self.epoch, **record}
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))
        for key, value in record.items():
            if isinstance(value, int | float) and key not in ("step", "epoch"):
                self._tb.add_scalar(key.replace(".", "/"), value, self.step)

    # ---- validation ---------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, dataset: Dataset | None = None) -> dict[str, float]:
        """Validation metrics, gathered over every process."""
        dataset = dataset if dataset is not None else self.data.val
        acc = self.accelerator
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(0)
        size = len(dataset)
        order = list(range(size))
        batch = self.optim_cfg.batch_size
        shards = [
            order[i : i + batch][acc.process_index :: acc.num_processes]
            for i in range(0, size, batch)
        ]
        # The bare module: processes may see different numbers of batches, so no
        # collective may run inside the loop (DDP's forward broadcasts buffers).
        module = acc.unwrap_model(self.module)
        batches = self._loader(dataset, [s for s in shards if s])
        totals, weights = validation_sums(module, batches, acc.device, acc.autocast)
        totals = {k: acc.reduce(v.to(acc.device), reduction="sum") for k, v in totals.items()}
        return metrics_of(totals, weights, self.data.summarize)

    # ---- checkpoints ----------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "history": self.history,
            "config": self.config,
        }

    def save(self) -> None:
        acc = self.accelerator
        save_checkpoint(
            self.out_dir,
            self.step,
            model=acc.unwrap_model(self.module),
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            state=self._state(),
            rank=acc.process_index,
            keep_last=self.run.keep_last,
            barrier=acc.wait_for_everyone if acc.num_processes > 1 else None,
        )
        acc.wait_for_everyone()

    def resume(self) -> bool:
        """Loads the last complete checkpoint of ``out_dir``; False if there is none."""
        path = latest_checkpoint(self.out_dir)
        if path is None:
            return False
        state = load_checkpoint(
            path,
            model=self.accelerator.unwrap_model(self.module),
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            rank=self.accelerator.process_index,
        )
        self.step, self.epoch, self.batch_in_epoch = (
            state["step"],
            state["epoch"],
            state["batch_in_epoch"],
        )
        self.history = state["history"]
        log.info(
            "resumed from %s (step %d, epoch %d, batch %d)",
            path,
            self.step,
            self.epoch,
            self.batch_in_epoch,
        )
        return True

    # ---- training -------------------------------------------------------------------------
    def fit(self) -> dict:
        acc, cfg = self.accelerator, self.optim_cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.module.train()
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc="train",
            disable=not acc.is_main_process,
            dynamic_ncols=True,
        )
        window: dict[str, float] = {}
        window_batches, window_samples, window_start = 0, 0, time.perf_counter()
        while self.step < self.total_steps:
            self.sampler.set_position(self.epoch, self.batch_in_epoch)
            if hasattr(self.data.train, "set_epoch"):
                self.data.train.set_epoch(self.epoch)
            for batch in self._loader(self.data.train, self.sampler):
                with acc.accumulate(self.module), acc.autocast():
                    loss, parts = self.module(batch.to(acc.device)).loss(self._sum_over_processes)
                    self._check_finite("loss", loss)
                    acc.backward(loss)
                    if acc.sync_gradients:
                        norm = acc.clip_grad_norm_(self.module.parameters(), cfg.max_grad_norm)
                        self._check_finite("gradient norm", norm)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                self.batch_in_epoch += 1
                for key, value in parts.items():
                    window[key] = window.get(key, 0.0) + float(value)
                window_batches += 1
                window_samples += cfg.batch_size
                if not acc.sync_gradients:
                    continue
                self.step += 1
                bar.update(1)
                if self.step % self.run.log_every == 0 or self.step == self.total_steps:
                    rate = window_samples / (time.perf_counter() - window_start)
                    means = {k: v / window_batches for k, v in window.items()}
                    means = {
                        k: float(v)
                        for k, v in zip(
                            means,
                            acc.reduce(
                                torch.tensor(list(means.values()), device=acc.device), "mean"
                            ).tolist(),
                            strict=True,
                        )
                    }
                    bar.set_postfix(loss=f"{means['loss']:.3f}", samples_s=f"{rate:.0f}")
                    self._log(
                        {**means, "lr": self.scheduler.get_last_lr()[0], "samples_per_s": rate}
                    )
                    window, window_batches, window_samples, window_start = (
                        {},
                        0,
                        0,
                        time.perf_counter(),
                    )
                if (
                    self.data.val is not None
                    and self.run.eval_every
                    and self.step % self.run.eval_every == 0
                ):
                    self._validate()
                if self.step % self.run.save_every == 0 or self.step == self.total_steps:
                    self.save()
                if self.step >= self.total_steps:
                    break
            else:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                if self.data.val is not None and not self.run.eval_every:
                    self._validate()
                continue
            if self.batch_in_epoch >= self.batches_per_epoch:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        bar.close()
        if self._tb is not None:
            self._tb.close()
        return self._state()

    def _check_finite(self, what: str, value: Tensor) -> None:
        """Stops before a non-finite value reaches the weights (every process agrees)."""
        bad = (~torch.isfinite(value.detach().float())).any().float()
        if self.accelerator.num_processes > 1:
            bad = self.accelerator.reduce(bad, reduction="sum")
        if not bad:
            return
        last = latest_checkpoint(self.out_dir)
        raise NonFiniteError(
            f"step {self.step + 1}: the {what} is {float(value.detach().float().sum()):g}; training "
            "stopped before the update, nothing was exported; last good checkpoint: "
            f"{last if last is not None else 'none'} (check the inputs for non-finite values, "
            "or lower optim.lr / optim.new_lr)"
        )

    def _validate(self) -> None:
        metrics = self.evaluate()
        self.history.append({"step": self.step, **metrics})
        self._log({f"val.{k}": v for k, v in metrics.items()})
        # Per-head lists and other structured metrics go to the files, not to this line.
        scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        log.info("step %d: %s", self.step, ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()))
