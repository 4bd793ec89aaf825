"""Visually grounded paraphrase (VGP) phrase pairs: the CSV and its matching to captions.

The CSV (Chu et al. 2018; Otani et al. 2020) gives, per row, an image and the
surface text of two grounded phrases from two captions of that image, with a
semantic class (:class:`VGPLabel`). The captions themselves are not in the CSV:
:func:`match_pairs` finds, for every pair of captions of the image, the grounded
phrases whose text matches, and keeps the pair when both phrases are in the same
coreference chain.
"""

from __future__ import annotations

import csv
import enum
import io
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from groundattn.data.errors import FormatError, read_utf8
from groundattn.data.flickr30k import Caption, Phrase

REQUIRED_COLUMNS = ("image", "original_phrase1", "original_phrase2", "type_label")


class VGPLabel(enum.IntEnum):
    """Semantic class of a phrase pair (p1 in caption 1, p2 in caption 2)."""

    ALTERNATION = 0
    ENTAILMENT_1_TO_2 = 1  # p1 entails p2
    ENTAILMENT_2_TO_1 = 2  # p2 entails p1
    EQUIVALENCE = 3
    INDEPENDENCE = 4


def swap_label(label: int) -> VGPLabel:
    """The class of the pair once the captions' order is swapped: 1 <-> 2, others kept."""
    label = VGPLabel(label)
    if label == VGPLabel.ENTAILMENT_1_TO_2:
        return VGPLabel.ENTAILMENT_2_TO_1
    if label == VGPLabel.ENTAILMENT_2_TO_1:
        return VGPLabel.ENTAILMENT_1_TO_2
    return label


@dataclass(frozen=True)
class VGPRecord:
    """One row of a VGP CSV.

    Attributes:
        image_id: the ``image`` column without folder and extension
            (``"flickr30k_images/1000092795.jpg"`` -> ``"1000092795"``).
        phrase1: ``original_phrase1``.
        phrase2: ``original_phrase2``.
        label: ``type_label``.
        line: line of the CSV the row ends on, for messages.
    """

    image_id: str
    phrase1: str
    phrase2: str
    label: VGPLabel
    line: int


def read_vgp_csv(path: str | Path) -> list[VGPRecord]:
    """Reads a VGP CSV; further columns (``phrase1``, ``ytrue``, ``roi1`` …) are ignored.

    Raises:
        FormatError: a missing required column (names it), or a row with an empty
            value or a ``type_label`` that is not an integer in 0..4 (names line and field).
    """
    path = Path(path)
    text = read_utf8(path, "utf-8-sig")  # a few MB at most; a BOM is dropped
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return _read_records(reader, path)
    except csv.Error as err:
        raise FormatError(path, f"invalid CSV: {err}", line=reader.line_num) from None


def _read_records(reader: csv.DictReader, path: Path) -> list[VGPRecord]:
    missing = [name for name in REQUIRED_COLUMNS if name not in (reader.fieldnames or [])]
    if missing:
        raise FormatError(
            path,
            f"missing column(s) {', '.join(missing)}; expected at least {', '.join(REQUIRED_COLUMNS)}",
            line=1,
            field=missing[0],
        )
    records = []
    for row in reader:
        line = reader.line_num
        values = {}
        for name in REQUIRED_COLUMNS:
            value = (row.get(name) or "").strip()
            if not value:
                raise FormatError(path, "empty value", line=line, field=name)
            values[name] = value
        try:
            label = VGPLabel(int(values["type_label"]))
        except ValueError:
            raise FormatError(
                path,
                f"expected an integer in 0..4, got {values['type_label']!r}",
                line=line,
                field="type_label",
            ) from None
        image_id = Path(values["image"]).stem
        phrase1, phrase2 = values["original_phrase1"], values["original_phrase2"]
        records.append(VGPRecord(image_id, phrase1, phrase2, label, line))
    return records


_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")

HTML_ROWS = "VGP rows with HTML remnants in a phrase"
OUTSIDE_ROWS = "VGP rows on an image outside the split"
REPEATED_ROWS = "VGP rows repeating an earlier row"
UNMATCHED_ROWS = "VGP rows matching no two captions of their image"
CONFLICTING_ROWS = "VGP rows relabelling a pair labelled earlier (first label kept)"


def screen_records(
    records: Iterable[VGPRecord], split_images: Collection[str]
) -> tuple[list[VGPRecord], Counter[str]]:
    """The rows fit to match, and how many were left out by reason.

    The public type-labelled release holds rows whose phrase kept HTML of the
    annotation tool (``a guy</font> give a kiss to <font color="red">a guy``:
    no caption holds such a phrase, so the row is left out), rows listed twice,
    and rows on images of another split of Flickr30k Entities.
    """
    kept, dropped, seen = [], Counter(), set()
    for record in records:
        key = (record.image_id, record.phrase1, record.phrase2, record.label)
        if _HTML_TAG.search(record.phrase1) or _HTML_TAG.search(record.phrase2):
            dropped[HTML_ROWS] += 1
        elif record.image_id not in split_images:
            dropped[OUTSIDE_ROWS] += 1
        elif key in seen:
            dropped[REPEATED_ROWS] += 1
        else:
            seen.add(key)
            kept.append(record)
    return kept, dropped


@dataclass(frozen=True)
class PhrasePair:
    """Two grounded phrases of the same chain in captions c1 and c2, and their class."""

    phrase1: Phrase
    phrase2: Phrase
    label: VGPLabel

    def swapped(self) -> PhrasePair:
        """The same pair seen with the captions' order swapped."""
        return PhrasePair(self.phrase2, self.phrase1, swap_label(self.label))


@dataclass
class MatchResult:
    """Outcome of :func:`match_pairs`.

    Attributes:
        pairs: ``(image_id, i, j)`` with ``i < j`` (caption indices) -> phrase pairs
            with ``phrase1`` in caption ``i``; use :meth:`pairs_for` for either order.
        unmatched: records that matched no caption pair (their image has no
            captions, or no two captions hold both phrases in one chain).
        conflicts: records that matched a phrase pair already labelled differently
            by an earlier record; the earlier label is kept.
    """

    pairs: dict[tuple[str, int, int], list[PhrasePair]] = field(default_factory=dict)
    unmatched: list[VGPRecord] = field(default_factory=list)
    conflicts: list[VGPRecord] = field(default_factory=list)

    def pairs_for(self, image_id: str, i: int, j: int) -> list[PhrasePair]:
        """Phrase pairs for captions ``(c_i, c_j)`` in this order (``phrase1`` in ``c_i``)."""
        if i < j:
            return list(self.pairs.get((image_id, i, j), []))
        return [pair.swapped() for pair in self.pairs.get((image_id, j, i), [])]


def normalize_phrase(text: str) -> str:
    """Phrase text as compared by the matcher: whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


def _index_phrases(captions: Sequence[Caption]) -> dict[str, list[tuple[int, Phrase]]]:
    """Visual phrases of an image's captions by normalised text -> (caption index, phrase)."""
    index: dict[str, list[tuple[int, Phrase]]] = {}
    for c, caption in enumerate(captions):
        for phrase in caption.phrases:
            if phrase.is_visual:
                index.setdefault(normalize_phrase(phrase.text), []).append((c, phrase))
    return index


def match_pairs(
    records: Iterable[VGPRecord], captions: Mapping[str, Sequence[Caption]]
) -> MatchResult:
    """Matches VGP records to the grounded phrases of caption pairs.

    A record ``(p1, p2, label)`` matches captions ``(c_i, c_j)``, ``i != j``, when
    ``p1`` is the text of a visual phrase of ``c_i``, ``p2`` of a visual phrase of
    ``c_j``, and both phrases are in the same chain. A record can match several
    caption pairs (and several occurrences of a phrase); each match is kept.
    Matches are stored under ``i < j``, swapped (with :func:`swap_label`) when the
    record's ``p1`` is in the later caption. Records matching nowhere are returned
    in ``MatchResult.unmatched``, records relabelling a kept pair in
    ``MatchResult.conflicts``; the caller reports them (the VGP dataset counts both).

    Args:
        records: rows of :func:`read_vgp_csv`.
        captions: image id -> its captions.
    """
    result = MatchResult()
    indexes: dict[str, dict[str, list[tuple[int, Phrase]]]] = {}
    labels: dict[tuple[str, int, int, Phrase, Phrase], VGPLabel] = {}
    num_records = 0
    for record in records:
        num_records += 1
        if record.image_id not in indexes:
            indexes[record.image_id] = _index_phrases(captions.get(record.image_id, ()))
        index = indexes[record.image_id]
        matched = conflicting = False
        for i, first in index.get(normalize_phrase(record.phrase1), ()):
            for j, second in index.get(normalize_phrase(record.phrase2), ()):
                if i == j or first.chain_id != second.chain_id:
                    continue
                matched = True
                pair = PhrasePair(first, second, record.label)
                lo, hi = min(i, j), max(i, j)
                if i > j:
                    pair = pair.swapped()
                key = (record.image_id, lo, hi, pair.phrase1, pair.phrase2)
                if key not in labels:
                    labels[key] = pair.label
                    result.pairs.setdefault((record.image_id, lo, hi), []).append(pair)
                elif labels[key] != pair.label:
                    conflicting = True
        if not matched:
            result.unmatched.append(record)
        elif conflicting:
            result.conflicts.append(record)
    return result
