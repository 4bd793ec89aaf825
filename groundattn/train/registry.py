"""The one task registry: task name → its :class:`~groundattn.train.run.Recipe`.

The command line (``groundattn train TASK``), the evaluation of a saved model
(the ``task`` of its ``config.json``), the experiment and the tests read it.
Adding a task is one entry here plus its folder under ``groundattn/tasks/`` and
its recipe. Recipes are imported on use, so that ``groundattn --help`` starts
without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from groundattn.train.run import Recipe


class Registered(NamedTuple):
    """A task of the command line: where its recipe is, and its one-line help."""

    recipe: str  # "module:Class"
    help: str  # one line for ``groundattn train --help``


TASKS = {
    "pretrain": Registered(
        "groundattn.train.pretrain:PretrainRecipe",
        "VL pretraining: masked language modelling + masked region classification",
    ),
    "vgp": Registered(
        "groundattn.train.vgp:VGPRecipe", "VGP fine-tuning with attention supervision"
    ),
    "vqa": Registered(
        "groundattn.train.vqa:VQARecipe", "VQA fine-tuning and evaluation (VQAv2 protocol)"
    ),
    "refcoco": Registered(
        "groundattn.train.refcoco:RefCOCORecipe", "referring expressions (RefCOCO+ protocol)"
    ),
    "phrase-grounding": Registered(
        "groundattn.train.phrase_grounding:PhraseGroundingRecipe",
        "phrase grounding on Flickr30k Entities (Recall@1, Recall@5)",
    ),
}


def recipe_class(name: str) -> type[Recipe]:
    """The recipe of a task name."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; accepted: {sorted(TASKS)}")
    module, cls = TASKS[name].recipe.split(":")
    return getattr(importlib.import_module(module), cls)
