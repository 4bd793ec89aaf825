"""Tests for groundattn.train.checkpoint: exact resume, damage detection, crash and resume.

They go through the public API end to end, so they also cover what it is built
on: checkpoint_io (durable files), state_codec (optimizer, scheduler and RNG
state as JSON + tensors) and rng.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
import re
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from groundattn.train import checkpoint, checkpoint_io, rng, state_codec
from groundattn.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
    save_model,
    verify_checkpoint,
)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The data stream, a pure function of the step."""
    generator = torch.Generator().manual_seed(1000 + step)
    return torch.randn(8, 4, generator=generator), torch.randn(8, 2, generator=generator)


class _Run:
    """Tiny model, AdamW and a linear warm-up; every step draws from all three global RNGs."""

    def __init__(self, dropout: float = 0.2):
        self.model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(dropout), nn.Linear(8, 2))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-2, weight_decay=0.01)
        self.scheduler = LambdaLR(self.optimizer, lambda step: min(1.0, (step + 1) / 5))

    def train(self, start: int, stop: int) -> None:
        self.model.train()
        for step in range(start, stop):
            x, y = _batch(step)
            jitter = 1.0 + 0.1 * random.random() + 0.1 * float(np.random.rand())
            loss = F.mse_loss(self.model(x), y) * jitter
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()

    def save(self, run_dir: Path, step: int, **kwargs) -> Path:
        parts = {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler}
        return save_checkpoint(run_dir, step, **parts, state={"step": step}, **kwargs)

    def load(self, path: Path, **kwargs) -> dict:
        parts = {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler}
        return load_checkpoint(path, **parts, **kwargs)


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def _draws() -> tuple:
    """One draw from each RNG the checkpoint restores."""
    return F.dropout(torch.ones(64), 0.5), random.random(), float(np.random.rand())


# --- exact resume -----------------------------------------------------------------------


def test_resume_equals_uninterrupted_run(tmp_path):
    _seed_all(0)
    reference = _Run()
    reference.train(0, 12)

    _seed_all(0)
    run = _Run()
    run.train(0, 5)
    path = run.save(tmp_path, 5)
    _seed_all(123)  # a fresh process starts from other weights and RNG states
    resumed = _Run()
    assert resumed.load(path) == {"step": 5}
    resumed.train(5, 12)

    _assert_same_weights(reference.model, resumed.model)
    assert resumed.scheduler.get_last_lr() == reference.scheduler.get_last_lr()


def test_optimizer_and_scheduler_state_round_trip_exactly(tmp_path):
    run = _Run()
    run.train(0, 3)
    path = run.save(tmp_path, 3)
    fresh = _Run()
    fresh.load(path)

    saved, loaded = run.optimizer.state_dict(), fresh.optimizer.state_dict()
    assert loaded["param_groups"] == saved["param_groups"]  # betas stay a tuple
    assert saved["state"].keys() == loaded["state"].keys()
    for index, entries in saved["state"].items():
        for name, value in entries.items():
            assert torch.equal(value, loaded["state"][index][name]), (index, name)
            assert value.dtype == loaded["state"][index][name].dtype
    assert fresh.scheduler.state_dict() == run.scheduler.state_dict()
    assert (path / "optimizer.safetensors").is_file()
    assert "state/0/exp_avg" in load_file(path / "optimizer.safetensors")


def test_rng_states_are_restored(tmp_path):
    _seed_all(7)
    run = _Run()
    path = run.save(tmp_path, 0)
    expected = _draws()
    _seed_all(99)
    run.load(path)
    mask, python_draw, numpy_draw = _draws()
    assert torch.equal(mask, expected[0])
    assert (python_draw, numpy_draw) == expected[1:]


def test_tied_weights_save_and_load(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 4)
            self.head = nn.Linear(4, 5, bias=False)
            self.head.weight = self.embed.weight

    model = Tied()
    path = save_checkpoint(tmp_path, 1, model=model, optimizer=None, scheduler=None, state={})
    other = Tied()
    load_checkpoint(path, model=other)
    _assert_same_weights(model, other)
    assert other.head.weight is other.embed.weight

    export = save_model(tmp_path / "export", model, {"vocab": 5})
    assert sorted(p.name for p in export.iterdir()) == ["config.json", "model.safetensors"]
    third = Tied()
    load_model_weights(export, third)
    load_model_weights(export / "model.safetensors", third)
    _assert_same_weights(model, third)


def test_mismatched_model_is_refused_with_the_keys(tmp_path):
    path = _Run().save(tmp_path, 1)
    with pytest.raises(
        CheckpointError, match=r"missing keys: \['bias', 'weight'\].*unexpected keys: \['0.bias'"
    ):
        load_checkpoint(path, model=nn.Linear(4, 8))
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_model_weights(
            path, nn.Sequential(nn.Linear(4, 9), nn.ReLU(), nn.Dropout(), nn.Linear(9, 2))
        )


def test_state_that_is_not_json_fails_before_writing(tmp_path):
    run = _Run()
    with pytest.raises(CheckpointError, match="not JSON-serialisable"):
        save_checkpoint(
            tmp_path, 1, model=run.model, optimizer=None, scheduler=None, state={"x": object()}
        )
    assert not (tmp_path / "checkpoints").exists()


# --- damage is detected, never loaded ---------------------------------------------------


def _flip_byte(path: Path) -> None:
    file = path / "model.safetensors"
    data = bytearray(file.read_bytes())
    data[-3] ^= 0xFF
    file.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    file = path / "optimizer.safetensors"
    file.write_bytes(file.read_bytes()[:-10])


def _drop_manifest(path: Path) -> None:
    (path / "manifest.json").unlink()


def _garble_manifest(path: Path) -> None:
    (path / "manifest.json").write_text('{"files": ')


def _drop_state(path: Path) -> None:
    (path / "state.json").unlink()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_flip_byte, "model.safetensors does not match its sha256"),
        (_truncate, "optimizer.safetensors has .* bytes, the manifest says"),
        (_drop_manifest, "manifest.json is missing"),
        (_garble_manifest, "manifest.json is unreadable JSON"),
        (_drop_state, "state.json is missing"),
    ],
)
def test_damaged_checkpoint_is_detected_and_skipped(tmp_path, caplog, damage, reason):
    run = _Run()
    run.train(0, 2)
    good = run.save(tmp_path, 2)
    run.train(2, 4)
    bad = run.save(tmp_path, 4)
    damage(bad)

    with pytest.raises(CheckpointError, match=rf"step-00000004: {reason}"):
        verify_checkpoint(bad)
    fresh = _Run()
    before = [p.clone() for p in fresh.model.parameters()]
    with pytest.raises(CheckpointError, match=reason):
        fresh.load(bad)
    assert all(torch.equal(p, q) for p, q in zip(before, fresh.model.parameters(), strict=True))

    with caplog.at_level(logging.WARNING, logger=checkpoint.__name__):
        assert latest_checkpoint(tmp_path) == good
    assert "step-00000004" in caplog.text
    assert any(re.search(reason, r.getMessage()) for r in caplog.records)


def test_interrupted_save_leaves_a_partial_that_is_skipped(tmp_path, caplog, monkeypatch):
    run = _Run()
    good = run.save(tmp_path, 1)

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        run.save(tmp_path, 2)
    partial = tmp_path / "checkpoints" / "step-00000002.partial"
    assert (partial / "model.safetensors").is_file()
    assert list_checkpoints(tmp_path) == [good]
    with pytest.raises(CheckpointError, match="unfinished save"):
        verify_checkpoint(partial)
    with caplog.at_level(logging.WARNING, logger=checkpoint.__name__):
        assert latest_checkpoint(tmp_path) == good
    assert "step-00000002.partial" in caplog.text and "interrupted" in caplog.text

    monkeypatch.undo()  # the next save of that step starts afresh
    assert verify_checkpoint(run.save(tmp_path, 2))["step"] == 2
    assert not partial.exists()


def test_load_model_weights_refuses_a_corrupt_checkpoint(tmp_path):
    path = _Run().save(tmp_path, 1)
    _flip_byte(path)
    with pytest.raises(CheckpointError, match="sha256"):
        load_model_weights(path, _Run().model)
    with pytest.raises(CheckpointError, match="sha256"):
        load_model_weights(path / "model.safetensors", _Run().model)


# --- pruning, replacing, several ranks --------------------------------------------------


def test_keep_last_prunes_older_checkpoints(tmp_path):
    run = _Run()
    for step in range(1, 7):
        run.save(tmp_path, step, keep_last=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step-00000004",
        "step-00000005",
        "step-00000006",
    ]
    run.save(tmp_path, 7, keep_last=None)
    assert len(list_checkpoints(tmp_path)) == 4
    run.save(tmp_path, 8, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000008"]


def test_resaving_a_step_replaces_it_and_keeps_later_ones(tmp_path):
    run = _Run()
    for step in (3, 4, 5):
        run.save(tmp_path, step, keep_last=3)
    run.train(0, 1)
    path = run.save(tmp_path, 4, keep_last=2)  # a run resumed from step 3 reaches step 4 again
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step-00000003",
        "step-00000004",
        "step-00000005",
    ]
    verify_checkpoint(path)
    fresh = _Run()
    fresh.load(path)
    _assert_same_weights(run.model, fresh.model)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        p.name for p in list_checkpoints(tmp_path)
    ]


def test_every_rank_writes_its_rng_files(tmp_path):
    run = _Run()
    barrier = threading.Barrier(2)
    errors = []

    def rank_main(rank: int) -> None:
        try:
            save_checkpoint(
                tmp_path,
                3,
                model=run.model,
                optimizer=run.optimizer,
                scheduler=None,
                state={"step": 3},
                rank=rank,
                barrier=barrier.wait,
            )
        except Exception as error:  # surfaced below
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=rank_main, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    manifest = verify_checkpoint(tmp_path / "checkpoints" / "step-00000003")
    assert {"rng-0.json", "rng-0.safetensors", "rng-1.json", "rng-1.safetensors"} <= manifest[
        "files"
    ].keys()
    assert load_checkpoint(
        tmp_path / "checkpoints" / "step-00000003", model=_Run().model, rank=1
    ) == {"step": 3}
    with pytest.raises(ValueError, match="barrier"):
        run.save(tmp_path, 4, rank=1)


def test_module_never_unpickles():
    for module in (checkpoint, checkpoint_io, rng, state_codec):  # all a checkpoint goes through
        source = Path(module.__file__).read_text()
        assert "torch.load(" not in source, module.__name__
        assert "pickle" not in source, module.__name__


# --- crash and resume -------------------------------------------------------------------

_TOTAL_STEPS = 24


def _crash_worker(run_dir: Path, connection) -> None:
    """Train to the end from the latest checkpoint, saving every step; runs in a forked child."""
    torch.set_num_threads(1)
    _seed_all(0)
    run = _Run()
    start = 0
    if (path := latest_checkpoint(run_dir)) is not None:
        start = run.load(path)["step"]
    for step in range(start, _TOTAL_STEPS):
        run.train(step, step + 1)
        run.save(run_dir, step + 1, keep_last=2)
        connection.send(step + 1)
    save_model(run_dir / "final", run.model, {"steps": _TOTAL_STEPS})
    connection.send(None)


def _start_worker(run_dir: Path):
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_crash_worker, args=(run_dir, sender), daemon=True)
    process.start()
    sender.close()
    return process, receiver


def _receive(receiver, timeout: float = 120.0):
    """The worker's next message; fails instead of hanging when the worker sends none."""
    assert receiver.poll(timeout), f"the training worker sent nothing for {timeout} s"
    return receiver.recv()


def _run_to_end(run_dir: Path) -> list[int]:
    process, receiver = _start_worker(run_dir)
    steps = []
    while (message := _receive(receiver)) is not None:
        steps.append(message)
    process.join(timeout=30)
    assert process.exitcode == 0
    return steps


@pytest.mark.skipif(sys.platform != "linux", reason="forks the test process to kill it cheaply")
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted_run(tmp_path):
    _seed_all(0)
    reference = _Run()  # never saved, never killed
    reference.train(0, _TOTAL_STEPS)

    run_dir = tmp_path / "crashed"
    chooser = random.Random(20240607)
    for _ in range(3):
        latest = latest_checkpoint(run_dir)
        resumed_from = 0 if latest is None else verify_checkpoint(latest)["step"]
        process, receiver = _start_worker(run_dir)
        target = resumed_from + chooser.randint(2, 6)
        first = _receive(receiver)
        assert first == resumed_from + 1  # it resumed instead of starting over
        while _receive(receiver) < target:
            pass
        time.sleep(chooser.uniform(0.0, 0.01))  # the kill lands anywhere in a step or a save
        process.kill()
        process.join(timeout=30)
        assert process.exitcode == -signal.SIGKILL

    resumed_from = verify_checkpoint(latest_checkpoint(run_dir))["step"]
    steps = _run_to_end(run_dir)
    assert steps == list(range(resumed_from + 1, _TOTAL_STEPS + 1))
    final = _Run().model
    load_model_weights(run_dir / "final", final)
    _assert_same_weights(reference.model, final)
    assert len(list_checkpoints(run_dir)) == 2


def test_a_full_disk_names_the_file_like_any_system_error(tmp_path, monkeypatch):
    import errno

    from safetensors import SafetensorError

    from groundattn.train import checkpoint_io

    def full(*args, **kwargs):
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    monkeypatch.setattr(checkpoint_io, "save_file", full)
    target = tmp_path / "model.safetensors"
    with pytest.raises(OSError) as caught:
        checkpoint_io.write_file(target, {"w": torch.zeros(2)})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)


def _rewrite(path: Path, content: bytes, times: int) -> None:
    for _ in range(times):
        checkpoint_io.replace_file(path, content)


def test_a_file_replaced_by_another_process_is_never_read_half_written(tmp_path):
    """Every rank of a distributed experiment writes a stage's stage.json while the
    others may read it: a reader sees the old file or the new one, whole."""
    path = tmp_path / "stage.json"
    content = json.dumps({"config": {"k": list(range(2000))}}).encode()
    checkpoint_io.replace_file(path, content)
    writer = multiprocessing.get_context("spawn").Process(
        target=_rewrite, args=(path, content, 300)
    )
    writer.start()
    reads = 0
    while writer.is_alive() or reads == 0:
        assert path.read_bytes() == content
        reads += 1
    writer.join()
    assert writer.exitcode == 0
    assert reads > 0 and sorted(p.name for p in tmp_path.iterdir()) == ["stage.json"]
