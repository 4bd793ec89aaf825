"""Flickr30k Entities: captions with grounded phrases, box annotations, splits.

Layout of a data set root (as distributed)::

    <root>/Sentences/<image_id>.txt   one caption per line, phrases in markup
    <root>/Annotations/<image_id>.xml PASCAL-VOC-like boxes per coreference chain
    <root>/train.txt, val.txt, test.txt   image ids, one per line

Box convention: the XML gives 1-based inclusive pixel ranges ``xmin..xmax``; they
become continuous 0-based coordinates ``(xmin - 1, ymin - 1, xmax, ymax)``, so that
``x2 - x1`` is the width in pixels (see :mod:`groundattn.data.boxes`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from xml.parsers import expat

from groundattn.data.errors import FormatError, read_utf8
from groundattn.errors import MissingFileError

Box = tuple[float, float, float, float]

# "[/EN#<chain>/<type>[/<type>...]", the token that opens a phrase.
_PHRASE_HEADER = re.compile(r"\[/EN#(\d+)((?:/[^\s/\[\]]+)+)")
_TOKEN = re.compile(r"\S+")
NOT_VISUAL_CHAIN = "0"


@dataclass(frozen=True)
class Phrase:
    """A grounded phrase of a caption.

    Attributes:
        text: the phrase's words joined by single spaces.
        chain_id: coreference chain; ``"0"`` marks phrases that were not annotated.
        types: entity types, e.g. ``("vehicles", "scene")``.
        first_word: index of the phrase's first word in ``Caption.text.split()``.
        char_span: ``(start, end)`` into ``Caption.text``, end exclusive.
    """

    text: str
    chain_id: str
    types: tuple[str, ...]
    first_word: int
    char_span: tuple[int, int]

    @property
    def word_span(self) -> tuple[int, int]:
        """``(first, end)`` word indices into ``Caption.text.split()``, end exclusive."""
        return self.first_word, self.first_word + len(self.text.split())

    @property
    def is_visual(self) -> bool:
        """False for the unannotated chain 0 and for ``notvisual`` phrases."""
        return self.chain_id != NOT_VISUAL_CHAIN and "notvisual" not in self.types


@dataclass(frozen=True)
class Caption:
    """A caption without markup and its phrases, in order of appearance."""

    text: str
    phrases: list[Phrase]


@dataclass(frozen=True)
class ImageAnnotation:
    """The boxes of one image.

    Attributes:
        width: image width in pixels.
        height: image height in pixels.
        boxes: chain id -> boxes ``(x1, y1, x2, y2)``, continuous 0-based pixels.
        scene: chains flagged ``<scene>1</scene>`` (the whole scene).
        nobox: chains flagged ``<nobndbox>1</nobndbox>``.
    """

    width: int
    height: int
    boxes: dict[str, list[Box]]
    scene: set[str]
    nobox: set[str]


class _OpenPhrase(NamedTuple):
    header: str  # the "[/EN#..." token
    column: int
    first_word: int
    chain_id: str
    types: tuple[str, ...]


def parse_caption(
    line: str, *, path: str | Path = "<caption>", line_no: int | None = None
) -> Caption:
    """Parses one caption line of a ``Sentences`` file.

    Args:
        line: e.g. ``"[/EN#18/people A man] in [/EN#19/clothing an orange hat] ."``.
        path: file named in errors.
        line_no: line named in errors.

    Raises:
        FormatError: unbalanced or nested brackets, a malformed ``[/EN#..`` header,
            an empty phrase; the message gives the column.
    """

    def fail(message: str, column: int) -> FormatError:
        return FormatError(path, f"{message} (column {column})", line=line_no)

    words: list[str] = []
    closed: list[tuple[_OpenPhrase, int]] = []  # each phrase and its end word, exclusive
    opened: _OpenPhrase | None = None
    for match in _TOKEN.finditer(line):
        token, column = match.group(), match.start() + 1
        if token.startswith("["):
            if opened is not None:
                raise fail(
                    f"nested '[': {opened.header!r} (column {opened.column}) is open", column
                )
            header = _PHRASE_HEADER.fullmatch(token.removesuffix("]"))
            if header is None:
                raise fail(
                    f"malformed phrase header {token!r}, expected '[/EN#<chain id>/<type>"
                    "[/<type>...]' followed by the phrase's words",
                    column,
                )
            if token.endswith("]"):
                raise fail(f"empty phrase {token!r}", column)
            types = tuple(header.group(2)[1:].split("/"))
            opened = _OpenPhrase(token, column, len(words), header.group(1), types)
            continue
        closes = token.endswith("]")
        word = token[:-1] if closes else token
        if "[" in word or "]" in word:
            raise fail(f"bracket inside the word {token!r}", column)
        if closes and opened is None:
            raise fail(f"unbalanced ']' in {token!r}: no phrase is open", column)
        if word:
            words.append(word)
        if closes:
            if len(words) == opened.first_word:
                raise fail(f"empty phrase {opened.header!r}", opened.column)
            closed.append((opened, len(words)))
            opened = None
    if opened is not None:
        raise fail(f"unbalanced '[': {opened.header!r} is never closed by ']'", opened.column)

    starts, offset = [], 0
    for word in words:
        starts.append(offset)
        offset += len(word) + 1
    text = " ".join(words)
    phrases = []
    for phrase, end in closed:
        char_span = (starts[phrase.first_word], starts[end - 1] + len(words[end - 1]))
        text_span = text[slice(*char_span)]
        phrases.append(
            Phrase(text_span, phrase.chain_id, phrase.types, phrase.first_word, char_span)
        )
    return Caption(text=text, phrases=phrases)


def _read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file; decoding errors name the line."""
    lines = [line.removesuffix("\r") for line in read_utf8(path).split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_sentences(path: str | Path) -> list[Caption]:
    """Reads a ``Sentences/<image_id>.txt`` file: one caption per line.

    Raises:
        FormatError: an empty line between captions, or a caption that does not parse.
    """
    path = Path(path)
    captions = []
    for line_no, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            raise FormatError(path, "empty line, expected a caption", line=line_no)
        captions.append(parse_caption(line, path=path, line_no=line_no))
    return captions


def read_split(path: str | Path) -> list[str]:
    """Reads a split file (``train.txt`` …): one image id per line, blank lines skipped.

    Raises:
        FormatError: a line with several words, or an id listed twice.
    """
    path = Path(path)
    ids: list[str] = []
    seen: dict[str, int] = {}
    for line_no, line in enumerate(_read_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 1:
            raise FormatError(path, f"expected one image id, got {line.strip()!r}", line=line_no)
        if fields[0] in seen:
            raise FormatError(
                path, f"image id {fields[0]} already listed on line {seen[fields[0]]}", line=line_no
            )
        seen[fields[0]] = line_no
        ids.append(fields[0])
    return ids


def _child_text(parent: ET.Element, tag: str, path: Path, where: str) -> str:
    children = parent.findall(tag)
    if len(children) != 1:
        raise FormatError(path, f"expected one <{tag}>, found {len(children)}", field=where)
    text = (children[0].text or "").strip()
    if not text:
        raise FormatError(path, f"<{tag}> is empty", field=f"{where}/{tag}")
    return text


def _number(parent: ET.Element, tag: str, path: Path, where: str, kind: type = float) -> float:
    text = _child_text(parent, tag, path, where)
    try:
        return kind(text)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise FormatError(
            path, f"expected {expected}, got {text!r}", field=f"{where}/{tag}"
        ) from None


def _flag(obj: ET.Element, tag: str, path: Path, where: str) -> bool | None:
    """Value of an optional 0/1 flag element; None when absent."""
    if obj.find(tag) is None:
        return None
    value = _number(obj, tag, path, where, int)
    if value not in (0, 1):
        raise FormatError(path, f"expected 0 or 1, got {value}", field=f"{where}/{tag}")
    return bool(value)


def _parse_box(bndbox: ET.Element, path: Path, where: str) -> Box:
    xmin, ymin, xmax, ymax = (
        _number(bndbox, t, path, where) for t in ("xmin", "ymin", "xmax", "ymax")
    )
    if xmax < xmin or ymax < ymin:
        raise FormatError(
            path,
            f"expected xmin <= xmax and ymin <= ymax, got {xmin} {ymin} {xmax} {ymax}",
            field=where,
        )
    # 1-based inclusive pixel range -> continuous 0-based coordinates.
    return (xmin - 1.0, ymin - 1.0, xmax, ymax)


def read_annotations(path: str | Path) -> ImageAnnotation:
    """Reads an ``Annotations/<image_id>.xml`` file.

    An object names one or more chains (``<name>``) and has either a ``<bndbox>`` or
    the flags ``<nobndbox>`` / ``<scene>``; a chain collects the boxes of all its
    objects.

    Raises:
        FormatError: XML that does not parse (names the line), a DTD or entity
            declaration, or a missing / malformed element (names the element).
    """
    path = Path(path)
    data = path.read_bytes()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise FormatError(path, "DTD and entity declarations are not accepted")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        reason = expat.errors.messages.get(err.code, "not well-formed")
        raise FormatError(path, f"invalid XML: {reason}", line=err.position[0]) from None
    if root.tag != "annotation":
        raise FormatError(path, f"expected root <annotation>, got <{root.tag}>", field=root.tag)
    size = root.find("size")
    if size is None:
        raise FormatError(path, "expected a <size> element", field="annotation/size")
    width, height = (_number(size, t, path, "size", int) for t in ("width", "height"))
    if width <= 0 or height <= 0:
        raise FormatError(path, f"expected a positive size, got {width}x{height}", field="size")

    boxes: dict[str, list[Box]] = {}
    scene: set[str] = set()
    nobox: set[str] = set()
    for k, obj in enumerate(root.findall("object"), 1):
        where = f"object[{k}]"
        names = [(name.text or "").strip() for name in obj.findall("name")]
        if not names or not all(names):
            raise FormatError(
                path, "expected one or more non-empty <name> (chain ids)", field=where
            )
        bndboxes = obj.findall("bndbox")
        if len(bndboxes) > 1:
            raise FormatError(
                path, f"expected at most one <bndbox>, found {len(bndboxes)}", field=where
            )
        is_nobox, is_scene = _flag(obj, "nobndbox", path, where), _flag(obj, "scene", path, where)
        if bndboxes:
            box = _parse_box(bndboxes[0], path, f"{where}/bndbox")
            for name in names:
                boxes.setdefault(name, []).append(box)
        elif not (is_nobox or is_scene):
            raise FormatError(
                path, "expected a <bndbox>, <nobndbox>1</nobndbox> or <scene>1</scene>", field=where
            )
        if is_nobox:
            nobox.update(names)
        if is_scene:
            scene.update(names)
    return ImageAnnotation(width=width, height=height, boxes=boxes, scene=scene, nobox=nobox)


@dataclass(frozen=True)
class EntitiesImage:
    """One image of Flickr30k Entities: its captions and its boxes."""

    image_id: str
    captions: list[Caption]
    annotation: ImageAnnotation


class Flickr30kEntities:
    """Index of a Flickr30k Entities root; files are read lazily, on access.

    Attributes:
        root: the data set root.
        splits: split name (``train``, ``val``, ``test``) -> image ids, for the
            split files present.
    """

    SPLITS = ("train", "val", "test")

    def __init__(self, root: str | Path):
        self.root = Path(root)
        for folder in ("Sentences", "Annotations"):
            if not (self.root / folder).is_dir():
                raise MissingFileError(f"{self.root / folder}: no such folder in Flickr30k root")
        self.splits = {
            name: read_split(self.root / f"{name}.txt")
            for name in self.SPLITS
            if (self.root / f"{name}.txt").is_file()
        }

    def image_ids(self) -> list[str]:
        """Ids of the images with a ``Sentences`` file, sorted."""
        return sorted(p.stem for p in (self.root / "Sentences").glob("*.txt"))

    def captions(self, image_id: str) -> list[Caption]:
        """The captions of one image (5 in the distributed data set)."""
        return read_sentences(self.root / "Sentences" / f"{image_id}.txt")

    def annotation(self, image_id: str) -> ImageAnnotation:
        """The boxes of one image."""
        return read_annotations(self.root / "Annotations" / f"{image_id}.xml")

    def __getitem__(self, image_id: str) -> EntitiesImage:
        return EntitiesImage(str(image_id), self.captions(image_id), self.annotation(image_id))

    def __contains__(self, image_id: str) -> bool:
        return (self.root / "Sentences" / f"{image_id}.txt").is_file()
