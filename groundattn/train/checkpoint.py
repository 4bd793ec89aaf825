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

Nested Python state goes to JSON with tagged values for what JSON lacks:
``{"__tensor__": key}`` points into the ``.safetensors`` file, ``{"__tuple__": [...]}``,
``{"__items__": [[k, v], ...]}`` for dicts with non-string keys (the optimizer's
integer parameter ids) and ``{"__ndarray__": [...], "dtype": ...}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

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
_TAGS = frozenset({"__tensor__", "__tuple__", "__items__", "__ndarray__"})

# What a file holds before it is written: JSON text or named tensors.
FileContent = bytes | dict[str, torch.Tensor]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt or does not fit what loads it."""


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
    files = _encode_tree(f"rng-{rank}", _get_rng_state())
    if rank == 0:
        files[MODEL_FILE] = _cpu_clones(model.state_dict())
        if optimizer is not None:
            files.update(_encode_tree("optimizer", optimizer.state_dict()))
        if scheduler is not None:
            files.update(_encode_tree("scheduler", scheduler.state_dict()))
        files[STATE_FILE] = _json_bytes(dict(state), what="trainer state")
        # A leftover of a killed save of this same step is discarded, never reused.
        _remove_tree(partial)
        partial.mkdir(parents=True)
    if barrier is not None:
        barrier()
    partial.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        _write_file(partial / name, content)
    if barrier is not None:
        barrier()
    if rank != 0:
        return final

    _write_file(partial / MANIFEST_FILE, _json_bytes(_manifest(partial, step), what="manifest"))
    _fsync_dir(partial)
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


def verify_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Check a checkpoint against its manifest: presence, size and sha256 of every file.

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
    manifest = _read_json(path / MANIFEST_FILE)
    try:
        entries = {
            name: (int(e["size"]), str(e["sha256"])) for name, e in manifest["files"].items()
        }
        step = manifest["step"]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(
            f"checkpoint {path}: {MANIFEST_FILE} is malformed ({error!r})"
        ) from error
    for required in (MODEL_FILE, STATE_FILE):
        if required not in entries:
            raise CheckpointError(f"checkpoint {path}: {MANIFEST_FILE} does not list {required}")
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
        if _sha256(file) != digest:
            raise CheckpointError(
                f"checkpoint {path}: {name} does not match its sha256 in the manifest (corrupt)"
            )
        if name.endswith(".json"):
            _read_json(file)
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
    _load_weights(path / MODEL_FILE, model, strict=True)
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is None:
            continue
        if not (path / f"{name}.json").is_file():
            raise CheckpointError(
                f"checkpoint {path}: holds no {name} state ({name}.json is absent)"
            )
        try:
            target.load_state_dict(_load_tree(path, name))
        except (KeyError, ValueError, TypeError, RuntimeError) as error:
            raise CheckpointError(
                f"checkpoint {path}: {name} state does not fit the {name} ({error})"
            ) from error
    state = _read_json(path / STATE_FILE)
    if restore_rng:
        if (path / f"rng-{rank}.json").is_file():
            _set_rng_state(_load_tree(path, f"rng-{rank}"))
        else:
            logger.warning(
                "checkpoint %s has no RNG state for rank %d; RNGs not restored", path, rank
            )
    logger.info("loaded checkpoint %s", path)
    return state


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
        if (file / MANIFEST_FILE).exists() or _STEP_DIR.fullmatch(file.name):
            verify_checkpoint(file)
        file = file / MODEL_FILE
    elif (file.parent / MANIFEST_FILE).exists():
        verify_checkpoint(file.parent)
    if not file.is_file():
        raise CheckpointError(f"weights file {file} does not exist")
    return _load_weights(file, model, strict=strict)


def save_model(directory: str | os.PathLike, model: nn.Module, config: Mapping[str, Any]) -> Path:
    """Export ``model.safetensors`` and ``config.json``, each written atomically.

    Each file is replaced whole (temporary file, fsync, ``os.replace``); the
    pair is not one transaction, so write an export directory once per model.

    Returns:
        The directory.
    """
    directory = Path(directory)
    contents = {
        CONFIG_FILE: _json_bytes(dict(config), what="model config"),
        MODEL_FILE: _cpu_clones(model.state_dict()),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in contents.items():
        tmp = directory / f".{name}.tmp-{os.getpid()}"
        try:
            _write_file(tmp, content)
            os.replace(tmp, directory / name)
        finally:
            tmp.unlink(missing_ok=True)
    _fsync_dir(directory)
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
        _remove_tree(trash)
        os.replace(final, trash)
    os.replace(partial, final)
    _fsync_dir(final.parent)
    _remove_tree(trash)


def _prune(root: Path, step: int, keep_last: int) -> None:
    """Drop all but the newest ``keep_last`` checkpoints up to ``step``, and dead leftovers.

    Checkpoints of a higher step (left by a run that was resumed from an older
    one) are not counted and not touched: the run overwrites them when it gets there.
    """
    older = [(s, path) for s, done, path in _scan(root) if done and s < step]
    for _, path in older[: max(0, len(older) - (keep_last - 1))]:
        trash = path.with_name(path.name + TRASH_SUFFIX)
        _remove_tree(trash)
        os.replace(path, trash)  # a half-deleted directory must never look finished
        _remove_tree(trash)
        logger.debug("pruned checkpoint %s", path)
    for s, done, path in _scan(root):
        if not done and s < step:  # later steps may be being written by other ranks
            _remove_tree(path)
    for path in root.glob(f"*{TRASH_SUFFIX}"):
        _remove_tree(path)


def _manifest(directory: Path, step: int) -> dict[str, Any]:
    files = {
        path.name: {"size": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != MANIFEST_FILE
    }
    return {"format": _FORMAT, "version": 1, "step": step, "files": files}


# --- files ------------------------------------------------------------------------------


def _write_file(path: Path, content: FileContent) -> None:
    """Write JSON bytes or tensors to ``path`` and fsync it."""
    if isinstance(content, bytes):
        with open(path, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        return
    save_file(content, str(path), metadata={"format": "pt"})
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _json_bytes(obj: Any, *, what: str) -> bytes:
    try:
        return json.dumps(obj, indent=2).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{what} is not JSON-serialisable: {error}") from error


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"checkpoint {path.parent}: {path.name} is unreadable JSON ({error})"
        ) from error


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error type, or OSError
        raise CheckpointError(f"{path}: unreadable safetensors file ({error})") from error


def _cpu_clones(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Own CPU copies: safetensors refuses tensors that share storage (tied weights)."""
    return {key: value.detach().to("cpu", copy=True).contiguous() for key, value in tensors.items()}


def _load_weights(file: Path, model: nn.Module, strict: bool) -> tuple[list[str], list[str]]:
    weights = _read_tensors(file)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{file}: weights do not fit the model; missing keys: {missing}; unexpected keys: {unexpected}"
        )
    try:
        return model.load_state_dict(weights, strict=strict)
    except RuntimeError as error:  # shape mismatches
        raise CheckpointError(f"{file}: weights do not fit the model ({error})") from error


# --- nested state <-> JSON + tensors ----------------------------------------------------


def _encode_tree(name: str, obj: Any) -> dict[str, FileContent]:
    """``{name}.json`` and, if ``obj`` holds tensors, ``{name}.safetensors``."""
    tensors: dict[str, torch.Tensor] = {}
    files: dict[str, FileContent] = {
        f"{name}.json": _json_bytes(_encode(obj, "", tensors), what=name)
    }
    if tensors:
        files[f"{name}.safetensors"] = tensors
    return files


def _load_tree(path: Path, name: str) -> Any:
    tensor_file = path / f"{name}.safetensors"
    tensors = _read_tensors(tensor_file) if tensor_file.is_file() else {}
    try:
        return _decode(_read_json(path / f"{name}.json"), tensors)
    except KeyError as error:
        raise CheckpointError(
            f"checkpoint {path}: {name}.json refers to tensor {error} absent from {tensor_file.name}"
        ) from error


def _encode(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able form of ``obj``; tensors move to ``tensors`` under their path ``key``."""
    if isinstance(obj, torch.Tensor):
        if key in tensors:
            raise CheckpointError(f"two tensors would be stored under the key {key!r}")
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, _child(key, i), tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, _child(key, i), tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and _TAGS.isdisjoint(obj):
            return {k: _encode(v, _child(key, k), tensors) for k, v in obj.items()}
        return {
            "__items__": [
                [_encode(k, key, {}), _encode(v, _child(key, k), tensors)] for k, v in obj.items()
            ]
        }
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    raise CheckpointError(f"cannot store a {type(obj).__name__} (at {key!r}) in a checkpoint")


def _child(key: str, name: object) -> str:
    return f"{key}/{name}" if key else str(name)


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if obj.keys() == {"__tensor__"}:
        return tensors[obj["__tensor__"]]
    if obj.keys() == {"__tuple__"}:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if obj.keys() == {"__items__"}:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
    if obj.keys() == {"__ndarray__", "dtype"}:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    return {k: _decode(v, tensors) for k, v in obj.items()}


# --- random number generators -----------------------------------------------------------


def _get_rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(legacy=False),
        "torch": torch.get_rng_state(),
    }
    # The current device only (one process per GPU); an uninitialised CUDA has drawn nothing.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        if torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])
        else:
            logger.warning(
                "checkpoint holds a CUDA RNG state but CUDA is not available; not restored"
            )
