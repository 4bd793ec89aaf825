"""Descriptions that pick out exactly one object of a scene.

Shared by the VQA questions ("what colour is *the shape left of the star*?")
and the referring expressions ("*the red circle on the left*"). A description
filters the objects by the attributes it states, then optionally

- by a relation to an anchor object (itself named by a unique simple
  description, its shape or its colour alone): ``the circle above the star``;
- by being the extreme one along an axis among what is left, with a margin of
  ``RELATION_MARGIN`` pixels over every other: ``the circle on the left``.

It *picks out* an object when exactly that object is left.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from groundattn.data.scenes.language import COLOUR_WORDS, GENERIC_NOUNS, RELATION_WORDS, pick
from groundattn.data.scenes.world import RELATION_MARGIN, RELATIONS, Scene, relation_holds

ATTRIBUTES = ("size", "colour", "shape")
EXTREMES = ("left", "right", "top", "bottom")
EXTREME_WORDS = {
    "left": ("on the left", "at the left"),
    "right": ("on the right", "at the right"),
    "top": ("at the top", "higher up"),
    "bottom": ("at the bottom", "lower down"),
}
REFER_SHAPE_WORDS = {
    "circle": ("circle", "round shape"),
    "square": ("square", "square shape"),
    "triangle": ("triangle", "triangular shape"),
    "star": ("star",),
    "cross": ("cross", "plus sign"),
    "diamond": ("diamond", "rhombus"),
}


@dataclass(frozen=True)
class Description:
    """Attributes stated (None: not stated), then an optional relation and extreme."""

    size: str | None = None
    colour: str | None = None
    shape: str | None = None
    relation: str | None = None
    anchor: Description | None = None
    extreme: str | None = None

    def stated(self) -> tuple[str, ...]:
        """The attribute names stated about the object itself."""
        return tuple(a for a in ATTRIBUTES if getattr(self, a) is not None)

    def to_json(self) -> dict:
        """A plain dict (anchor nested), for the structured records."""
        out = {a: getattr(self, a) for a in (*ATTRIBUTES, "relation", "extreme")}
        out["anchor"] = self.anchor.to_json() if self.anchor else None
        return {k: v for k, v in out.items() if v is not None}


def _coordinate(scene: Scene, k: int, extreme: str) -> float:
    o = scene.objects[k]
    return {"left": o.cx, "right": -o.cx, "top": o.cy, "bottom": -o.cy}[extreme]


def matches(scene: Scene, d: Description) -> list[int]:
    """Indices of the objects ``d`` applies to."""
    objects = scene.objects
    left = [
        k
        for k, o in enumerate(objects)
        if (d.size is None or d.size == o.size)
        and (d.colour is None or d.colour == o.colour)
        and (d.shape is None or d.shape == o.shape)
    ]
    if d.relation is not None:
        anchor = matches(scene, d.anchor)
        if len(anchor) != 1:
            return []
        left = [
            k
            for k in left
            if k != anchor[0] and relation_holds(objects[k], objects[anchor[0]], d.relation)
        ]
    if d.extreme is not None:
        if len(left) < 2:
            return []  # an extreme among one is no description
        values = {k: _coordinate(scene, k, d.extreme) for k in left}
        best = min(left, key=values.get)
        if any(values[k] < values[best] + RELATION_MARGIN for k in left if k != best):
            return []
        left = [best]
    return left


@functools.lru_cache(maxsize=256)
def unique_descriptions(
    scene: Scene, target: int, exclude: tuple[str, ...] = ()
) -> tuple[Description, ...]:
    """Every description picking out ``target`` that states none of ``exclude``, simplest first.

    Cached: questions and referring expressions ask about the same objects.
    """
    o = scene.objects[target]
    allowed = [a for a in ATTRIBUTES if a not in exclude]
    bases = [
        Description(**{a: getattr(o, a) for a in combo})
        for n in range(len(allowed) + 1)
        for combo in itertools.combinations(allowed, n)
    ]
    found = [d for d in bases if d.stated() and matches(scene, d) == [target]]
    for base in bases[: 1 + len(allowed)]:  # no attribute, or one
        for extreme in EXTREMES:
            d = Description(**{a: getattr(base, a) for a in ATTRIBUTES}, extreme=extreme)
            if matches(scene, d) == [target]:
                found.append(d)
    for anchor_index, anchor_object in enumerate(scene.objects):
        if anchor_index == target:
            continue
        anchors = [Description(shape=anchor_object.shape), Description(colour=anchor_object.colour)]
        anchor = next((a for a in anchors if matches(scene, a) == [anchor_index]), None)
        if anchor is None:
            continue
        for relation in RELATIONS:
            if not relation_holds(o, anchor_object, relation):
                continue
            for base in bases[: 1 + len(allowed)]:
                fields = {a: getattr(base, a) for a in ATTRIBUTES}
                d = Description(**fields, relation=relation, anchor=anchor)
                if matches(scene, d) == [target]:
                    found.append(d)
    return tuple(found)


def describe(d: Description, rng: np.random.Generator, comparative: bool = False) -> str:
    """Words for ``d``, starting with "the"; ``comparative`` says "larger" for "large"."""
    words = ["the"]
    if d.size is not None:
        options = {"large": ("large", "big"), "small": ("small", "little")}[d.size]
        if comparative:
            options = {"large": ("larger", "bigger"), "small": ("smaller",)}[d.size]
        words.append(pick(rng, options))
    if d.colour is not None:
        words.append(pick(rng, COLOUR_WORDS[d.colour][:1]))
    words.append(pick(rng, REFER_SHAPE_WORDS[d.shape]) if d.shape else pick(rng, GENERIC_NOUNS))
    if d.relation is not None:
        words += [pick(rng, RELATION_WORDS[d.relation]), describe(d.anchor, rng)]
    if d.extreme is not None:
        words.append(pick(rng, EXTREME_WORDS[d.extreme]))
    return " ".join(words)
