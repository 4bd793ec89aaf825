"""The files of a checkpoint: durable writes, and reads that fail with a :class:`CheckpointError`.

A file is written whole and fsynced (:func:`write_file`), and the directory
holding a new or renamed entry is fsynced too (:func:`fsync_dir`), so that what
:mod:`groundattn.train.checkpoint` publishes survives a crash. Reads name the
file that is unreadable, and weights are checked against the model they load
into (:func:`load_weights`). Nothing here rebuilds arbitrary Python objects
from bytes: tensors go through safetensors, the rest through JSON.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from groundattn.errors import GroundattnError

# What a file holds before it is written: JSON text or named tensors.
FileContent = bytes | dict[str, torch.Tensor]


class CheckpointError(GroundattnError, RuntimeError):
    """A checkpoint is missing, incomplete, corrupt or does not fit what loads it."""


def write_file(path: Path, content: FileContent) -> None:
    """Write JSON bytes or tensors to ``path`` and fsync it."""
    if isinstance(content, bytes):
        with open(path, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        return
    try:
        save_file(content, str(path), metadata={"format": "pt"})
    except SafetensorError as error:  # its I/O errors are no OSErrors: name the file like one
        if "No space left on device" in str(error):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        raise
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def replace_file(path: Path, content: FileContent) -> None:
    """Write ``path`` whole: a temporary file of this process, fsynced, then ``os.replace``.

    A reader never sees it half written, even while another process (another
    rank of a distributed run) writes the same file.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write_file(tmp, content)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Delete the directory ``path`` if it exists."""
    if path.exists():
        shutil.rmtree(path)


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def json_bytes(obj: Any, *, what: str) -> bytes:
    """``obj`` as indented UTF-8 JSON; ``what`` names it in the error."""
    try:
        return json.dumps(obj, indent=2).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{what} is not JSON-serialisable: {error}") from error


def read_json(path: Path) -> Any:
    """The JSON value of a checkpoint's file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"checkpoint {path.parent}: {path.name} is unreadable JSON ({error})"
        ) from error


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, on the CPU."""
    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error type, or OSError
        raise CheckpointError(f"{path}: unreadable safetensors file ({error})") from error


def cpu_clones(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Own CPU copies: safetensors refuses tensors that share storage (tied weights)."""
    return {key: value.detach().to("cpu", copy=True).contiguous() for key, value in tensors.items()}


def load_weights(file: Path, model: nn.Module, strict: bool) -> tuple[list[str], list[str]]:
    """Load a safetensors file into ``model``; with ``strict``, its keys must be the model's.

    Returns:
        The ``(missing_keys, unexpected_keys)`` result of ``load_state_dict``.
    """
    weights = read_tensors(file)
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
