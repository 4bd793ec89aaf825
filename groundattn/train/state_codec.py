"""Nested Python state (optimizer, scheduler, RNGs) stored as JSON plus a safetensors file.

``state_dict()`` trees hold what JSON lacks; it is written with tagged values:
``{"__tensor__": key}`` points into the ``.safetensors`` file, ``{"__tuple__": [...]}``,
``{"__items__": [[k, v], ...]}`` for dicts with non-string keys (the optimizer's
integer parameter ids) and ``{"__ndarray__": [...], "dtype": ...}``. A tensor's
key is its path in the tree (``state/0/exp_avg``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from groundattn.train.checkpoint_io import (
    CheckpointError,
    FileContent,
    json_bytes,
    read_json,
    read_tensors,
)

_TAGS = frozenset({"__tensor__", "__tuple__", "__items__", "__ndarray__"})


def encode_tree(name: str, obj: Any) -> dict[str, FileContent]:
    """``{name}.json`` and, if ``obj`` holds tensors, ``{name}.safetensors``."""
    tensors: dict[str, torch.Tensor] = {}
    files: dict[str, FileContent] = {
        f"{name}.json": json_bytes(_encode(obj, "", tensors), what=name)
    }
    if tensors:
        files[f"{name}.safetensors"] = tensors
    return files


def load_tree(path: Path, name: str) -> Any:
    """The tree that :func:`encode_tree` stored as ``name`` in the directory ``path``."""
    tensor_file = path / f"{name}.safetensors"
    tensors = read_tensors(tensor_file) if tensor_file.is_file() else {}
    try:
        return _decode(read_json(path / f"{name}.json"), tensors)
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
