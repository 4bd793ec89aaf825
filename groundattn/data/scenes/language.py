"""Words of the grounded scenes: the surface forms of phrases.

A phrase *states* a set of attributes of what it names, a dict such as
``{"size": "large", "colour": "red", "shape": "circle"}``; the words are drawn
at random among synonyms, so two phrases can state the same attributes in other
words ("a red circle" / "the red round shape"). Keys:

- objects: ``size``, ``colour``, ``shape``, ``location`` (the object's cell,
  ``"<row> <column>"``, e.g. ``"top left"``, see :meth:`SceneObject.cell`);
- groups of objects: ``count`` and at most one of ``colour`` / ``shape``;
- the scene: ``background`` (``dark`` / ``grey``).

A phrase without ``shape`` uses a generic noun ("the object"), which states nothing.
"""

from __future__ import annotations

import numpy as np

SIZE_WORDS = {"large": ("large", "big"), "small": ("small", "little", "tiny")}
COLOUR_WORDS = {
    "red": ("red", "crimson"),
    "green": ("green",),
    "blue": ("blue",),
    "yellow": ("yellow",),
    "purple": ("purple", "violet"),
    "orange": ("orange",),
    "white": ("white",),
}
SHAPE_WORDS = {
    "circle": ("circle", "round shape", "disc"),
    "square": ("square", "square shape"),
    "triangle": ("triangle", "triangular shape"),
    "star": ("star", "star shape"),
    "cross": ("cross", "plus sign"),
    "diamond": ("diamond", "rhombus", "diamond shape"),
}
GENERIC_NOUNS = ("shape", "object", "thing", "figure")
PLURALS = {"cross": "crosses", "rhombus": "rhombuses"}
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
LOCATION_WORDS = {
    "top left": ("in the top left corner", "at the top left"),
    "top centre": ("at the top", "near the top"),
    "top right": ("in the top right corner", "at the top right"),
    "middle left": ("on the left", "at the left side"),
    "middle centre": ("in the middle", "in the centre"),
    "middle right": ("on the right", "at the right side"),
    "bottom left": ("in the bottom left corner", "at the bottom left"),
    "bottom centre": ("at the bottom", "near the bottom"),
    "bottom right": ("in the bottom right corner", "at the bottom right"),
}
SCENE_WORDS = ("the picture", "this image", "the scene", "the frame")
BACKGROUND_WORDS = {
    "dark": ("a dark background", "the dark backdrop"),
    "grey": ("a grey background", "the gray backdrop"),
}
RELATION_WORDS = {
    "left of": ("to the left of", "left of"),
    "right of": ("to the right of", "right of"),
    "above": ("above", "over"),
    "below": ("below", "beneath", "under"),
}


def pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    """One of ``options``, uniformly."""
    return options[int(rng.integers(len(options)))]


def plural(noun: str) -> str:
    """The plural of a (possibly two-word) noun."""
    head, _, last = noun.rpartition(" ")
    last = PLURALS.get(last, last + "s")
    return f"{head} {last}" if head else last


def with_article(determiner: str, rest: str) -> str:
    """``a`` becomes ``an`` before a vowel."""
    if determiner == "a" and rest[0] in "aeiou":
        determiner = "an"
    return f"{determiner} {rest}"


def object_phrase(attributes: dict[str, str], rng: np.random.Generator) -> str:
    """Words for one object stating exactly ``attributes``."""
    words = []
    if "size" in attributes:
        words.append(pick(rng, SIZE_WORDS[attributes["size"]]))
    if "colour" in attributes:
        words.append(pick(rng, COLOUR_WORDS[attributes["colour"]]))
    if "shape" in attributes:
        words.append(pick(rng, SHAPE_WORDS[attributes["shape"]]))
    else:
        words.append(pick(rng, GENERIC_NOUNS))
    text = with_article(pick(rng, ("a", "the", "one")), " ".join(words))
    if "location" in attributes:
        text += " " + pick(rng, LOCATION_WORDS[attributes["location"]])
    return text


def group_phrase(attributes: dict, rng: np.random.Generator) -> str:
    """Words for a group of objects stating exactly ``attributes`` (plural)."""
    if "colour" in attributes:
        noun = (
            pick(rng, COLOUR_WORDS[attributes["colour"]]) + " " + plural(pick(rng, GENERIC_NOUNS))
        )
    elif "shape" in attributes:
        noun = plural(pick(rng, SHAPE_WORDS[attributes["shape"]]))
    else:
        noun = plural(pick(rng, GENERIC_NOUNS))
    if "count" not in attributes:
        return pick(rng, ("the", "all the")) + " " + noun
    count = attributes["count"]
    options = [f"{NUMBER_WORDS[count]} {noun}", f"the {NUMBER_WORDS[count]} {noun}"]
    if count == 2:
        options.append(f"both {noun}")
    return pick(rng, options)


def scene_phrase(attributes: dict[str, str], rng: np.random.Generator) -> str:
    """Words for the whole picture, or its background."""
    if "background" in attributes:
        return pick(rng, BACKGROUND_WORDS[attributes["background"]])
    return pick(rng, SCENE_WORDS)
