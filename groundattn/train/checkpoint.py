"""Checkpoints that survive a crash: safetensors weights, JSON state, atomic directories.

A checkpoint is the directory ``run_dir/checkpoints/step-{step:08d}/``. It is
written under ``step-{step:08d}.partial/``; every file is fsynced, then
``manifest.json`` (each file's size and sha256) is written last, and the
directory is renamed to its final name. A directory without the suffix is
therefore complete unless something damaged it afterwards, which
:func:`verify_checkpoint` detects from the manifest. Nothing here rebuilds
arbitrary Python objects from bytes: tensors go through safetensors, the rest
through JSON.

Files of a checkpoint:

- ``model.safetensors``: ``model.state_dict()`` (tied tensors copied under each key).
- ``optimizer.json`` + ``optimizer.safetensors``: ``optimizer.state_dict()``.
- ``scheduler.json`` (+ ``.safetensors`` if it holds tensors): the LR scheduler.
- ``rng-{rank}.json`` + ``rng-{rank}.safetensors``: Python, numpy and torch RNGs.
- ``state.json``: the trainer's own JSON-able dict (epoch, step, metrics ...).
- ``manifest.json``: step and ``{file: {size, sha256}}``.

How nested state becomes JSON and tensors is :mod:`groundattn.train.state_codec`;
durable writes and checked reads are :mod:`groundattn.train.checkpoint_io`; the
RNG state is captured and restored by :mod:`groundattn.train.rng`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from groundattn.train.checkpoint_io import (
    CheckpointError,
    cpu_clones,
    file_sha256,
    fsync_dir,
    json_bytes,
    load_weights,
    read_json,
    remove_tree,
    replace_file,
    write_file,
)
from groundattn.train.rng import get_rng_state, set_rng_state
from groundattn.train.state_codec import encode_tree, load_tree

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.json"
PARTIAL_SUFFIX = ".partial"
TRASH_SUFFIX = ".trash"
_FORMAT = "groundattn-checkpoint"
_STEP_DIR = re.compile(r"step-(\d+)(\.partial)?")


# --- public API -------------------------------------------------------------------------


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    state: Mapping[str, Any],
    rank: int = 0,
    keep_last: int | None = 3,
    barrier: Callable[[], None] | None = None,
) -> Path:
    """Write the checkpoint of ``step`` atomically and prune older ones.

    Every process calls this with its own ``rank``. Rank 0 writes the shared
    files, each rank its own RNG files. With several processes, ``barrier``
    (for instance ``accelerator.wait_for_everyone``) is required: it is called
    once after rank 0 has prepared a fresh ``.partial`` directory and once
    after every rank has written its files; rank 0 then writes the manifest
    and renames. Other ranks return before the rename is done.

    Args:
        run_dir: The run directory; checkpoints go to ``run_dir/checkpoints``.
        step: Global step, the checkpoint's name.
        model: The unwrapped model (``accelerator.unwrap_model``).
        optimizer: Optimizer whose state is saved, or None.
        scheduler: LR scheduler whose state is saved, or None.
        state: The trainer's JSON-able state (epoch, batch position, metrics ...).
        rank: This process's rank.
        keep_last: How many complete checkpoints of lower or equal step to keep,
            the new one included; None keeps all.
        barrier: Synchronises all ranks; needed when ``rank`` is not 0.

    Returns:
        The final path of the checkpoint.

    Raises:
        CheckpointError: If some state cannot be stored (not JSON-able).
        ValueError: On a negative step, ``keep_last < 1`` or ``rank > 0`` without barrier.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be None or >= 1, got {keep_last}")
    if rank != 0 and barrier is None:
        raise ValueError(f"rank {rank} needs a barrier shared by all ranks to save a checkpoint")
    root = Path(run_dir) / CHECKPOINTS_DIR
    final = root / f"step-{step:08d}"
    partial = final.with_name(final.name + PARTIAL_SUFFIX)

    # Serialise everything before touching the disk, so bad state fails fast.
    files = encode_tree(f"rng-{rank}", get_rng_state())
    if rank == 0:
        files[MODEL_FILE] = cpu_clones(model.state_dict())
        if optimizer is not None:
            files.update(encode_tree("optimizer", optimizer.state_dict()))
        if scheduler is not None:
            files.update(encode_tree("scheduler", scheduler.state_dict()))
        files[STATE_FILE] = json_bytes(dict(state), what="trainer state")
        # A leftover of a killed save of this same step is discarded, never reused.
        remove_tree(partial)
        partial.mkdir(parents=True)
    if barrier is not None:
        barrier()
    partial.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        write_file(partial / name, content)
    if barrier is not None:
        barrier()
    if rank != 0:
        return final

    write_file(partial / MANIFEST_FILE, json_bytes(_manifest(partial, step), what="manifest"))
    fsync_dir(partial)
    _publish(partial, final)
    if keep_last is not None:
        _prune(root, step, keep_last)
    logger.info("saved checkpoint %s", final)
    return final


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoints whose save finished (renamed from ``.partial``), sorted by step.

    They are not verified; :func:`latest_checkpoint` does that.
    """
    return [path for _, done, path in _scan(Path(run_dir) / CHECKPOINTS_DIR) if done]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint that verifies, or None.

    Newer ones that do not verify (unfinished ``.partial`` saves, damaged
    files) are skipped with a warning naming them and the reason.
    """
    for step, done, path in reversed(_scan(Path(run_dir) / CHECKPOINTS_DIR)):
        if not done:
            logger.warning(
                "skipping unfinished checkpoint %s (save of step %d was interrupted)", path, step
            )
            continue
        try:
            verify_checkpoint(path)
        except CheckpointError as error:
            logger.warning("skipping checkpoint that does not verify: %s", error)
            continue
        return path
    return None


def verify_checkpoint(
    path: str | os.PathLike, required: tuple[str, ...] = (MODEL_FILE, STATE_FILE)
) -> dict[str, Any]:
    """Check a checkpoint (or an export) against its manifest: presence, size and sha256 of every file.

    Returns:
        The manifest.

    Raises:
        CheckpointError: Naming the checkpoint, the file and what is wrong.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path}: not a directory")
    if path.name.endswith(PARTIAL_SUFFIX):
        raise CheckpointError(
            f"checkpoint {path}: unfinished save (still a '{PARTIAL_SUFFIX}' directory)"
        )
    if not (path / MANIFEST_FILE).is_file():
        raise CheckpointError(
            f"checkpoint {path}: {MANIFEST_FILE} is missing (incomplete or damaged checkpoint)"
        )
    manifest = read_json(path / MANIFEST_FILE)
    try:
        entries = {
            name: (int(e["size"]), str(e["sha256"])) for name, e in manifest["files"].items()
        }
        step = manifest["step"]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(
            f"checkpoint {path}: {MANIFEST_FILE} is malformed ({error!r})"
        ) from error
    for name in required:
        if name not in entries:
            raise CheckpointError(f"checkpoint {path}: {MANIFEST_FILE} does not list {name}")
    match = _STEP_DIR.fullmatch(path.name)
    if match and int(match[1]) != step:
        raise CheckpointError(
            f"checkpoint {path}: {MANIFEST_FILE} is for step {step}, not {int(match[1])}"
        )
    for name, (size, digest) in entries.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path}: {name} is missing")
        actual = file.stat().st_size
        if actual != size:
            raise CheckpointError(
                f"checkpoint {path}: {name} has {actual} bytes, the manifest says {size} (truncated or overwritten)"
            )
        if file_sha256(file) != digest:
            raise CheckpointError(
                f"checkpoint {path}: {name} does not match its sha256 in the manifest (corrupt)"
            )
        if name.endswith(".json"):
            read_json(file)
    return manifest


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    rank: int = 0,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Verify a checkpoint, then restore weights (strictly), optimizer, scheduler and RNGs.

    Args:
        path: The checkpoint directory.
        model: The unwrapped model to load into.
        optimizer: Loaded if given; the checkpoint must hold optimizer state.
        scheduler: Loaded if given; the checkpoint must hold scheduler state.
        rank: Whose RNG files to restore.
        restore_rng: Restore Python, numpy and torch (CPU, current CUDA device) RNGs.

    Returns:
        The trainer state saved with the checkpoint.

    Raises:
        CheckpointError: If the checkpoint does not verify or does not fit.
    """
    path = Path(path)
    verify_checkpoint(path)
    load_weights(path / MODEL_FILE, model, strict=True)
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is None:
            continue
        if not (path / f"{name}.json").is_file():
            raise CheckpointError(
                f"checkpoint {path}: holds no {name} state ({name}.json is absent)"
            )
        try:
            target.load_state_dict(load_tree(path, name))
        except (KeyError, ValueError, TypeError, RuntimeError) as error:
            raise CheckpointError(
                f"checkpoint {path}: {name} state does not fit the {name} ({error})"
            ) from error
    state = read_json(path / STATE_FILE)
    if restore_rng:
        if (path / f"rng-{rank}.json").is_file():
            set_rng_state(load_tree(path, f"rng-{rank}"))
        else:
            logger.warning(
                "checkpoint %s has no RNG state for rank %d; RNGs not restored", path, rank
            )
    logger.info("loaded checkpoint %s", path)
    return state


def seal_export(directory: str | os.PathLike, step: int) -> None:
    """Writes the manifest (size and sha256 of every file) of a finished export, last."""
    directory = Path(directory)
    write_file(directory / MANIFEST_FILE, json_bytes(_manifest(directory, step), what="manifest"))
    fsync_dir(directory)


def verify_saved(directory: str | os.PathLike) -> None:
    """Verifies a checkpoint or an export directory against its manifest.

    An export written before exports carried a manifest loads with a warning.
    """
    directory = Path(directory)
    if _STEP_DIR.fullmatch(directory.name):
        verify_checkpoint(directory)
    elif (directory / MANIFEST_FILE).is_file():
        verify_checkpoint(directory, required=(MODEL_FILE, CONFIG_FILE))
    else:
        logger.warning("%s has no %s: its files are not verified", directory, MANIFEST_FILE)


def load_model_weights(
    path_or_file: str | os.PathLike, model: nn.Module, strict: bool = True
) -> tuple[list[str], list[str]]:
    """Load weights from a checkpoint directory, a :func:`save_model` export or a ``.safetensors`` file.

    A checkpoint (a directory with a manifest, or a file inside one) is
    verified first.

    Returns:
        The ``(missing_keys, unexpected_keys)`` result of ``load_state_dict``.

    Raises:
        CheckpointError: If the file is missing, corrupt, or (strict) the keys differ.
    """
    file = Path(path_or_file)
    if file.is_dir():
        verify_saved(file)
        file = file / MODEL_FILE
    elif (file.parent / MANIFEST_FILE).exists():
        verify_saved(file.parent)
    if not file.is_file():
        raise CheckpointError(f"weights file {file} does not exist")
    return load_weights(file, model, strict=strict)


def save_model(directory: str | os.PathLike, model: nn.Module, config: Mapping[str, Any]) -> Path:
    """Export ``model.safetensors`` and ``config.json``, each written atomically.

    :func:`seal_export` then writes the manifest that loading verifies.

    Each file is replaced whole (temporary file, fsync, ``os.replace``); the
    pair is not one transaction, so write an export directory once per model.

    Returns:
        The directory.
    """
    directory = Path(directory)
    contents = {
        CONFIG_FILE: json_bytes(dict(config), what="model config"),
        MODEL_FILE: cpu_clones(model.state_dict()),
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST_FILE).unlink(missing_ok=True)  # sealed again by seal_export
    for name, content in contents.items():
        replace_file(directory / name, content)
    fsync_dir(directory)
    logger.info("exported model to %s", directory)
    return directory


# --- layout, publishing, pruning --------------------------------------------------------


def _scan(root: Path) -> list[tuple[int, bool, Path]]:
    """``(step, finished, path)`` of every checkpoint directory, by step (finished last)."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.fullmatch(path.name)
        if match and path.is_dir():
            found.append((int(match[1]), match[2] is None, path))
    return sorted(found)


def _publish(partial: Path, final: Path) -> None:
    """Rename the finished ``.partial`` directory to its final name (replacing an old one)."""
    trash = final.with_name(final.name + TRASH_SUFFIX)
    if final.exists():
        logger.warning("replacing existing checkpoint %s", final)
        remove_tree(trash)
        os.replace(final, trash)
    os.replace(partial, final)
    fsync_dir(final.parent)
    remove_tree(trash)


def _prune(root: Path, step: int, keep_last: int) -> None:
    """Drop all but the newest ``keep_last`` checkpoints up to ``step``, and dead leftovers.

    Checkpoints of a higher step (left by a run that was resumed from an older
    one) are not counted and not touched: the run overwrites them when it gets there.
    """
    older = [(s, path) for s, done, path in _scan(root) if done and s < step]
    for _, path in older[: max(0, len(older) - (keep_last - 1))]:
        trash = path.with_name(path.name + TRASH_SUFFIX)
        remove_tree(trash)
        os.replace(path, trash)  # a half-deleted directory must never look finished
        remove_tree(trash)
        logger.debug("pruned checkpoint %s", path)
    for s, done, path in _scan(root):
        if not done and s < step:  # later steps may be being written by other ranks
            remove_tree(path)
    for path in root.glob(f"*{TRASH_SUFFIX}"):
        remove_tree(path)


def _manifest(directory: Path, step: int) -> dict[str, Any]:
    files = {
        path.name: {"size": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != MANIFEST_FILE
    }
    return {"format": _FORMAT, "version": 1, "step": step, "files": files}
