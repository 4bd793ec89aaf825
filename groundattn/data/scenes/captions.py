"""Five captions per scene with grounded phrases, in Flickr30k Entities markup.

Every object gets a chain (an entity); so do the groups of objects the captions
name ("two red shapes": a chain grounded to each red object), the scene
("the picture": a chain flagged ``<scene>``) and, sometimes, a visual thing
without a box ("the empty space": flagged ``<nobndbox>``). Words that refer to
nothing visual are marked with chain 0 and type ``notvisual``.

Chain ids are ``CHAIN_STRIDE * image_index + local`` with ``local`` = 1 + object
index for objects, ``GROUP_BASE + k`` for groups, ``SCENE_LOCAL`` and
``NOBOX_LOCAL``: unique over the data set, never 0.

A chain is named at most once per caption, and no surface text repeats in an
image's captions (case-insensitively), so a phrase's text finds its caption.
Every object is named in at least one caption.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from groundattn.data.scenes.language import (
    RELATION_WORDS,
    group_phrase,
    object_phrase,
    pick,
    scene_phrase,
)
from groundattn.data.scenes.world import RELATIONS, Scene, relation_holds

CAPTIONS_PER_IMAGE = 5
CHAIN_STRIDE = 100
GROUP_BASE = 10
SCENE_LOCAL = 30
NOBOX_LOCAL = 31
REUSE_FORM = 0.2  # chance that a later phrase of an object states an earlier phrase's set

# Attribute sets an object phrase states, with their sampling weights.
OBJECT_FORMS = (
    ((), 0.10),
    (("shape",), 0.13),
    (("colour",), 0.09),
    (("colour", "shape"), 0.17),
    (("size", "shape"), 0.08),
    (("size", "colour", "shape"), 0.13),
    (("size", "colour"), 0.05),
    (("location",), 0.06),
    (("shape", "location"), 0.07),
    (("colour", "shape", "location"), 0.07),
    (("colour", "location"), 0.05),
)


@dataclass(frozen=True)
class Chain:
    """An entity: ``kind`` is object, group, scene or nobox; ``objects`` its boxes."""

    chain_id: int
    kind: str
    objects: tuple[int, ...]


@dataclass(frozen=True)
class CaptionPhrase:
    """A grounded phrase: its caption, chain, types, surface text and stated attributes."""

    caption: int
    chain_id: int
    types: tuple[str, ...]
    text: str
    attributes: dict


@dataclass
class Captions:
    """The captions of one image: markup lines, phrases and the chains they name."""

    lines: list[str]
    phrases: list[CaptionPhrase]
    chains: list[Chain]


@dataclass
class _Mention:
    chain: Chain
    types: tuple[str, ...]
    text: str
    attributes: dict


@dataclass
class _Builder:
    scene: Scene
    index: int
    rng: np.random.Generator
    chains: dict[int, Chain] = field(default_factory=dict)
    used_text: set[str] = field(default_factory=set)
    stated: dict[int, list[tuple[str, ...]]] = field(default_factory=dict)

    def chain(self, local: int, kind: str, objects: tuple[int, ...]) -> Chain:
        chain_id = CHAIN_STRIDE * self.index + local
        return self.chains.setdefault(chain_id, Chain(chain_id, kind, objects))

    def _unique(self, make, tries: int = 30) -> tuple[str, dict] | None:
        for _ in range(tries):
            text, attributes = make()
            if text.lower() not in self.used_text:
                self.used_text.add(text.lower())
                return text, attributes
        return None

    def obj(self, k: int) -> _Mention:
        o = self.scene.objects[k]
        values = {"size": o.size, "colour": o.colour, "shape": o.shape}
        values["location"] = " ".join(o.cell(self.scene.width, self.scene.height))
        forms, weights = zip(*OBJECT_FORMS, strict=True)
        probs = np.array(weights) / sum(weights)

        earlier = self.stated.setdefault(k, [])

        def make() -> tuple[str, dict]:
            # Coreferring phrases often say the same thing in other words: reuse a set.
            if earlier and self.rng.random() < REUSE_FORM:
                keys = pick(self.rng, earlier)
            else:
                keys = forms[int(self.rng.choice(len(forms), p=probs))]
            attributes = {key: values[key] for key in keys}
            return object_phrase(attributes, self.rng), attributes

        # Twins (same size, colour, shape and cell) share their words; their most detailed
        # forms still have dozens of variants for at most ten mentions.
        found = self._unique(make) or self._unique(lambda: _full(values, self.rng), 200)
        if found is None:
            raise RuntimeError(f"no unused words left for object {k} of image {self.index}")
        text, attributes = found
        earlier.append(tuple(attributes))
        return _Mention(self.chain(1 + k, "object", (k,)), ("shapes",), text, attributes)

    def group(self, local: int, key: str, members: tuple[int, ...]) -> _Mention | None:
        value = getattr(self.scene.objects[members[0]], key) if key != "all" else None

        def make() -> tuple[str, dict]:
            attributes = {} if key == "all" else {key: value}
            if self.rng.random() < 0.6:
                attributes["count"] = len(members)
            return group_phrase(attributes, self.rng), attributes

        found = self._unique(make)
        if found is None:
            return None
        return _Mention(self.chain(local, "group", members), ("shapes",), *found)

    def scene_mention(self, background: bool) -> _Mention | None:
        def make() -> tuple[str, dict]:
            attributes = {"background": self.scene.background} if background else {}
            return scene_phrase(attributes, self.rng), attributes

        found = self._unique(make)
        if found is None:
            return None
        types = ("other", "scene") if background else ("scene",)
        return _Mention(self.chain(SCENE_LOCAL, "scene", ()), types, *found)


def _full(values: dict, rng: np.random.Generator) -> tuple[str, dict]:
    attributes = {k: values[k] for k in ("size", "colour", "shape", "location")}
    return object_phrase(attributes, rng), attributes


def _groups(scene: Scene) -> list[tuple[int, str, tuple[int, ...]]]:
    """Groups of 2+ objects sharing a colour or a shape, and all objects; distinct members."""
    groups, seen = [], set()
    for key in ("colour", "shape", "all"):
        values = sorted({getattr(o, key) for o in scene.objects}) if key != "all" else [None]
        for value in values:
            members = tuple(
                k for k, o in enumerate(scene.objects) if key == "all" or getattr(o, key) == value
            )
            if len(members) >= 2 and members not in seen:
                seen.add(members)
                groups.append((GROUP_BASE + len(groups), key, members))
    return groups


def _join(items: list) -> list:
    """``A`` / ``A and B`` / ``A , B and C`` as a segment list."""
    out: list = []
    for i, item in enumerate(items):
        if i > 0:
            out.append("and" if i == len(items) - 1 else ",")
        out.append(item)
    return out


def _relation_words(b: _Builder, a: int, other: int) -> str:
    objects = b.scene.objects
    holding = [r for r in RELATIONS if relation_holds(objects[a], objects[other], r)]
    return pick(b.rng, RELATION_WORDS[pick(b.rng, holding)]) if holding else "next to"


def _list_caption(b: _Builder, chosen: list[int]) -> list:
    mentions = [b.obj(k) for k in chosen]
    roll = b.rng.random()
    if roll < 0.3 and (scene := b.scene_mention(background=False)):
        return [scene, pick(b.rng, ("shows", "contains")), *_join(mentions)]
    if roll < 0.5 and (scene := b.scene_mention(background=True)):
        return [*_join(mentions), "on", scene]
    if roll < 0.62 and "the empty space" not in b.used_text and len(mentions) > 1:
        b.used_text.add("the empty space")
        nobox = _Mention(b.chain(NOBOX_LOCAL, "nobox", ()), ("other",), "the empty space", {})
        return [*_join(mentions), "with", nobox, "around them"]
    if roll < 0.8 and len(mentions) > 1:
        words = pick(b.rng, ("each", "no particular order"))
        notvisual = _Mention(Chain(0, "notvisual", ()), ("notvisual",), words, {})
        if words == "each":
            return [*_join(mentions), ",", notvisual, "on its own"]
        return [*_join(mentions), "in", notvisual]
    return _join(mentions)


def _relation_caption(b: _Builder, chosen: list[int]) -> list:
    head, *others = chosen[:3]
    segments: list = [b.obj(head), "is"]
    for i, other in enumerate(others):
        if i > 0:
            segments.append("and")
        segments += [_relation_words(b, head, other), b.obj(other)]
    if not others:
        segments += ["in", b.scene_mention(background=False) or "the picture"]
    return segments


def _group_caption(b: _Builder, chosen: list[int], group: tuple) -> list:
    local, key, members = group
    mention = b.group(local, key, members)
    if mention is None:
        return _list_caption(b, chosen)
    rest = [b.obj(k) for k in chosen if k not in members]
    if not rest:
        scene = b.scene_mention(background=b.rng.random() < 0.4)
        if scene is None:
            return [mention]
        where = "on" if scene.attributes else "in"  # on a background, in a picture
        if mention.text.startswith(("the ", "all ", "both ")):
            return [mention, "appear " + where, scene]
        return ["there are", mention, where, scene]
    return _join([mention, *rest])


def _choose_objects(b: _Builder, mentions: np.ndarray) -> list[int]:
    n = len(b.scene.objects)
    if n <= 3:
        chosen = list(range(n))
    else:
        k = int(b.rng.integers(2, min(4, n) + 1))
        order = np.lexsort((b.rng.random(n), mentions))  # least named first, ties at random
        chosen = [int(i) for i in order[:k]]
    return [chosen[i] for i in b.rng.permutation(len(chosen))]


def _render(segments: list, caption: int) -> tuple[str, list[CaptionPhrase]]:
    words, phrases = [], []
    for i, segment in enumerate(segments + ["."]):
        if isinstance(segment, _Mention):
            text = segment.text[0].upper() + segment.text[1:] if i == 0 else segment.text
            words.append(f"[/EN#{segment.chain.chain_id}/{'/'.join(segment.types)} {text}]")
            phrases.append(
                CaptionPhrase(
                    caption, segment.chain.chain_id, segment.types, text, segment.attributes
                )
            )
        else:
            words.append(segment[0].upper() + segment[1:] if i == 0 else segment)
    return " ".join(words), phrases


def make_captions(scene: Scene, index: int, rng: np.random.Generator) -> Captions:
    """Writes the five captions of scene number ``index``."""
    b = _Builder(scene, index, rng)
    groups = _groups(scene)
    kinds = ["list", "relation", "relation", "group", pick(rng, ("list", "group", "relation"))]
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    mentions = np.zeros(len(scene.objects), dtype=int)
    used_groups: list[tuple] = []
    lines, phrases = [], []
    for caption, kind in enumerate(kinds):
        chosen = _choose_objects(b, mentions)
        if caption == CAPTIONS_PER_IMAGE - 1:  # the last caption names whoever is still unnamed
            chosen += [int(k) for k in np.flatnonzero(mentions == 0) if k not in chosen]
            kind = "list" if len(chosen) > 3 or kind == "group" else kind
        if kind == "group" and groups:
            reuse = used_groups and rng.random() < 0.6
            group = pick(rng, used_groups) if reuse else groups[int(rng.integers(len(groups)))]
            used_groups.append(group)
            segments = _group_caption(b, chosen, group)
        elif kind == "relation":
            segments = _relation_caption(b, chosen)
        else:
            segments = _list_caption(b, chosen)
        line, caption_phrases = _render(segments, caption)
        for phrase in caption_phrases:
            chain = b.chains.get(phrase.chain_id)
            if chain is not None and chain.kind == "object":
                mentions[chain.objects[0]] += 1
        lines.append(line)
        phrases += caption_phrases
    chains = sorted(b.chains.values(), key=lambda c: c.chain_id)
    return Captions(lines, phrases, chains)
