"""Visually grounded paraphrase pairs, labelled from what the phrases state.

A pair is two phrases of two different captions of one image grounded to the
same chain. Its class follows from the attribute sets ``S1`` and ``S2`` the two
phrases state (see :mod:`groundattn.data.scenes.language`), each attribute
belonging to one *aspect*: ``appearance`` (colour, shape, size, background),
``location`` (the cell named) or ``number`` (a group's count).

- 3 **equivalence**: ``S1 == S2`` (in other words: surface texts always differ).
- 4 **independence**: the phrases state no common aspect, so nothing one says is
  implied by or comparable to what the other says: "the object" (states
  nothing) / "the shape on the left"; "a red shape" / "the shape at the top".
- 1 **entailment** phrase1 → phrase2: otherwise, ``S1 ⊋ S2``
  ("a large red circle" → "a circle").
- 2 **entailment** phrase2 → phrase1: otherwise, ``S2 ⊋ S1``.
- 0 **alternation**: otherwise, the phrases share an aspect but state different
  attributes of it, neither containing the other ("a red shape" / "a circle").

Swapping the phrases swaps classes 1 and 2 and keeps the others.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from groundattn.data.scenes.captions import CaptionPhrase
from groundattn.data.vgp import REQUIRED_COLUMNS, VGPLabel

LABEL_NAMES = ("alternation", "entailment_1to2", "entailment_2to1", "equivalence", "independence")
ASPECTS = {
    "colour": "appearance",
    "shape": "appearance",
    "size": "appearance",
    "background": "appearance",
    "location": "location",
    "count": "number",
}
# The reader's required columns and the lower-cased phrases, in the published order.
CSV_COLUMNS = (*REQUIRED_COLUMNS[:3], "phrase1", "phrase2", REQUIRED_COLUMNS[3])


@dataclass(frozen=True)
class LabelledPair:
    """One VGP row with the records it was labelled from."""

    image_id: int
    chain_id: int
    phrase1: CaptionPhrase
    phrase2: CaptionPhrase
    label: VGPLabel


def vgp_label(attributes1: dict, attributes2: dict) -> VGPLabel:
    """The class of a pair of phrases of one chain stating ``attributes1`` / ``attributes2``."""
    s1, s2 = set(attributes1.items()), set(attributes2.items())
    if s1 == s2:
        return VGPLabel.EQUIVALENCE
    if not {ASPECTS[k] for k, _ in s1} & {ASPECTS[k] for k, _ in s2}:
        return VGPLabel.INDEPENDENCE
    if s1 > s2:
        return VGPLabel.ENTAILMENT_1_TO_2
    if s2 > s1:
        return VGPLabel.ENTAILMENT_2_TO_1
    return VGPLabel.ALTERNATION


def image_pairs(
    image_id: int, phrases: list[CaptionPhrase], rng: np.random.Generator
) -> list[LabelledPair]:
    """All pairs of one image, each in a random order (so that classes 1 and 2 balance)."""
    by_chain: dict[int, list[CaptionPhrase]] = {}
    for phrase in phrases:
        if phrase.chain_id != 0:
            by_chain.setdefault(phrase.chain_id, []).append(phrase)
    pairs = []
    for chain_id, chain_phrases in sorted(by_chain.items()):
        for i, first in enumerate(chain_phrases):
            for second in chain_phrases[i + 1 :]:
                if first.caption == second.caption:
                    continue
                if rng.random() < 0.5:
                    first, second = second, first
                label = vgp_label(first.attributes, second.attributes)
                pairs.append(LabelledPair(image_id, chain_id, first, second, label))
    return pairs


def balance(
    pairs: list[LabelledPair], rng: np.random.Generator, ratio: float = 1.5
) -> list[LabelledPair]:
    """Keeps at most ``ratio`` × the rarest class's count of each class, chosen at random.

    The two entailment directions count as one class (their halves stay even).
    Order of the kept pairs is the input order.
    """
    forward = VGPLabel.ENTAILMENT_1_TO_2
    group = {forward: forward, VGPLabel.ENTAILMENT_2_TO_1: forward}
    counts = Counter(group.get(p.label, p.label) for p in pairs)
    if not counts:
        return []
    rarest = min(counts[c] if c != forward else counts[c] / 2 for c in counts)
    cap = {c: int(np.ceil(ratio * rarest * (2 if c == forward else 1))) for c in counts}
    keep = np.zeros(len(pairs), dtype=bool)
    for c in counts:
        members = [i for i, p in enumerate(pairs) if group.get(p.label, p.label) == c]
        chosen = rng.permutation(len(members))[: cap[c]]
        keep[[members[i] for i in chosen]] = True
    return [p for p, k in zip(pairs, keep, strict=True) if k]


def write_vgp_csv(path: Path, pairs: list[LabelledPair]) -> None:
    """Writes the pairs with :data:`CSV_COLUMNS` (``phrase1``/``phrase2`` lower-cased)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for p in pairs:
            t1, t2 = p.phrase1.text, p.phrase2.text
            writer.writerow((p.image_id, t1, t2, t1.lower(), t2.lower(), p.label))
