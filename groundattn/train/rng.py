"""The global random number generators of a process: capture and restore.

A checkpoint stores them so that a resumed run draws what the uninterrupted one
would have drawn: Python's ``random``, numpy's legacy global generator, torch's
CPU generator and, where CUDA has been used, the current device's generator
(one process per GPU).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


def get_rng_state() -> dict[str, Any]:
    """The state of every global RNG, as nested tuples, dicts, arrays and tensors."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(legacy=False),
        "torch": torch.get_rng_state(),
    }
    # The current device only (one process per GPU); an uninitialised CUDA has drawn nothing.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned; a CUDA state without CUDA is skipped."""
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
