"""RefCOCO / RefCOCO+ in the ``refer`` format: refs pickle, COCO instances, detected boxes.

Boxes are kept as given (``[x, y, w, h]``, COCO's continuous pixels) and offered
as ``x1 y1 x2 y2`` through ``box_xyxy`` (see :mod:`groundattn.data.boxes`).
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from groundattn.data.errors import (
    FormatError,
    UnsafePickleError,
    check_type,
    get_field,
    load_json,
)

SPLITS = ("train", "val", "testA", "testB")
Box = tuple[float, float, float, float]


class _PlainDataUnpickler(pickle.Unpickler):
    """Loads only what pickle builds natively: dict, list, tuple, set, str, bytes,
    int, float, bool, None. Every class or function lookup is refused, so no
    ``__reduce__`` payload can run."""

    def __init__(self, file: io.BufferedIOBase, path: Path):
        # Python 2 pickles (the published refs files) hold byte strings: read as UTF-8.
        super().__init__(file, encoding="utf-8")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(
            self.path,
            f"refused to load {module}.{name}: only plain containers and scalars are accepted",
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(self.path, "refused a persistent id: only plain data is accepted")


def load_plain_pickle(path: str | Path) -> Any:
    """Unpickles a file made of plain containers and scalars only.

    Raises:
        UnsafePickleError: the pickle names a class or function (before any of it runs).
        FormatError: the file is not a valid pickle.
    """
    path = Path(path)
    with path.open("rb") as file:
        try:
            return _PlainDataUnpickler(file, path).load()
        except UnsafePickleError:
            raise
        except Exception as err:  # a malformed stream fails in many ways; no code ran
            raise FormatError(path, f"not a valid pickle: {type(err).__name__}: {err}") from None


@dataclass(frozen=True)
class RefSentence:
    """One referring expression."""

    sent_id: int
    sent: str
    raw: str
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class Ref:
    """One referred object and its expressions."""

    ref_id: int
    ann_id: int
    image_id: int
    split: str
    category_id: int
    sent_ids: tuple[int, ...]
    sentences: tuple[RefSentence, ...]
    file_name: str | None = None


def _optional(entry: dict, name: str, kind: type | tuple[type, ...], path: Path, where: str) -> Any:
    """``entry[name]`` checked like :func:`get_field`, or None when absent."""
    return get_field(entry, name, kind, path, where) if name in entry else None


def _parse_sentence(entry: Any, path: Path, where: str) -> RefSentence:
    sent = get_field(entry, "sent", str, path, where)
    raw = _optional(entry, "raw", str, path, where) or sent
    tokens = _optional(entry, "tokens", list, path, where) or sent.split()
    for k, token in enumerate(tokens):
        check_type(token, str, path, f"{where}.tokens[{k}]")
    return RefSentence(get_field(entry, "sent_id", int, path, where), sent, raw, tuple(tokens))


def _parse_ref(entry: Any, path: Path, where: str) -> Ref:
    split = get_field(entry, "split", str, path, where)
    if split not in SPLITS:
        raise FormatError(path, f"expected one of {SPLITS}, got {split!r}", field=f"{where}.split")
    sent_ids = get_field(entry, "sent_ids", list, path, where)
    for k, sent_id in enumerate(sent_ids):
        check_type(sent_id, int, path, f"{where}.sent_ids[{k}]")
    sentences = get_field(entry, "sentences", list, path, where)
    if not sentences:
        raise FormatError(path, "expected at least one sentence", field=f"{where}.sentences")
    parsed = tuple(
        _parse_sentence(s, path, f"{where}.sentences[{k}]") for k, s in enumerate(sentences)
    )
    if sorted(s.sent_id for s in parsed) != sorted(sent_ids):
        raise FormatError(
            path,
            f"sent_ids {sent_ids} differ from the sentences' ids {[s.sent_id for s in parsed]}",
            field=f"{where}.sent_ids",
        )
    return Ref(
        ref_id=get_field(entry, "ref_id", int, path, where),
        ann_id=get_field(entry, "ann_id", int, path, where),
        image_id=get_field(entry, "image_id", int, path, where),
        split=split,
        category_id=get_field(entry, "category_id", int, path, where),
        sent_ids=tuple(sent_ids),
        sentences=parsed,
        file_name=_optional(entry, "file_name", str, path, where),
    )


def load_refs(path: str | Path) -> list[Ref]:
    """Reads ``refs(unc).p`` (or ``refs(google).p``) with a restricted unpickler.

    Raises:
        UnsafePickleError: the pickle names any class or function; nothing of it runs.
        FormatError: not a list of refs, or a ref with a missing or malformed field
            (named as ``refs[<index>].<field>``).
    """
    path = Path(path)
    data = check_type(load_plain_pickle(path), list, path, "refs")
    return [_parse_ref(entry, path, f"refs[{k}]") for k, entry in enumerate(data)]


def _xywh(value: list, path: Path, where: str) -> Box:
    if len(value) != 4:
        raise FormatError(path, f"expected [x, y, w, h], got {value!r:.60}", field=where)
    for k, v in enumerate(value):
        check_type(v, (int, float), path, f"{where}[{k}]")
    if value[2] < 0 or value[3] < 0:
        raise FormatError(path, f"expected w, h >= 0, got {value}", field=where)
    return tuple(float(v) for v in value)


def _to_xyxy(box: Box) -> Box:
    x, y, w, h = box
    return (x, y, x + w, y + h)


@dataclass(frozen=True)
class CocoImage:
    """An image of a COCO instances file."""

    id: int
    width: int
    height: int
    file_name: str


@dataclass(frozen=True)
class CocoAnnotation:
    """An object of a COCO instances file (segmentation not kept)."""

    id: int
    image_id: int
    category_id: int
    bbox: Box  # [x, y, w, h]

    @property
    def box_xyxy(self) -> Box:
        """The box as ``x1 y1 x2 y2``."""
        return _to_xyxy(self.bbox)


@dataclass(frozen=True)
class CocoInstances:
    """A COCO instances file indexed by id; ``categories`` maps id -> name."""

    images: dict[int, CocoImage]
    annotations: dict[int, CocoAnnotation]
    categories: dict[int, str]
    path: Path = Path("instances.json")


_IMAGE_FIELDS = (("id", int), ("width", int), ("height", int), ("file_name", str))


def load_instances(path: str | Path) -> CocoInstances:
    """Reads a COCO ``instances.json``: images, annotations (bbox ``[x, y, w, h]``), categories.

    Raises:
        FormatError: a missing or malformed field, a repeated id, or an annotation of
            an unknown image or category (named as ``annotations[<index>].<field>``).
    """
    path = Path(path)
    data = load_json(path)
    categories: dict[int, str] = {}
    for k, entry in enumerate(get_field(data, "categories", list, path)):
        where = f"categories[{k}]"
        category_id = get_field(entry, "id", int, path, where)
        categories[category_id] = get_field(entry, "name", str, path, where)
    images: dict[int, CocoImage] = {}
    for k, entry in enumerate(get_field(data, "images", list, path)):
        where = f"images[{k}]"
        image = CocoImage(*(get_field(entry, n, t, path, where) for n, t in _IMAGE_FIELDS))
        if image.id in images:
            raise FormatError(path, f"repeated image id {image.id}", field=f"{where}.id")
        images[image.id] = image
    annotations: dict[int, CocoAnnotation] = {}
    for k, entry in enumerate(get_field(data, "annotations", list, path)):
        where = f"annotations[{k}]"
        ann = CocoAnnotation(
            id=get_field(entry, "id", int, path, where),
            image_id=get_field(entry, "image_id", int, path, where),
            category_id=get_field(entry, "category_id", int, path, where),
            bbox=_xywh(get_field(entry, "bbox", list, path, where), path, f"{where}.bbox"),
        )
        if ann.id in annotations:
            raise FormatError(path, f"repeated annotation id {ann.id}", field=f"{where}.id")
        if ann.image_id not in images:
            raise FormatError(path, f"unknown image {ann.image_id}", field=f"{where}.image_id")
        if ann.category_id not in categories:
            raise FormatError(
                path, f"unknown category {ann.category_id}", field=f"{where}.category_id"
            )
        annotations[ann.id] = ann
    return CocoInstances(
        images=images, annotations=annotations, categories=categories, path=Path(path)
    )


@dataclass(frozen=True)
class Detection:
    """A detected box; ``extra`` keeps the entry's other fields (``det_id``, …)."""

    image_id: int
    box: Box  # [x, y, w, h]
    category_id: int | None = None
    score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def box_xyxy(self) -> Box:
        """The box as ``x1 y1 x2 y2``."""
        return _to_xyxy(self.box)


def load_detections(path: str | Path) -> list[Detection]:
    """Reads detected boxes ``[{"image_id": int, "box": [x, y, w, h], …}, …]``.

    ``category_id`` and ``score`` are checked and kept where present; any other
    field is kept in ``Detection.extra``.
    """
    path = Path(path)
    data = check_type(load_json(path), list, path, "detections")
    detections = []
    for k, entry in enumerate(data):
        where = f"[{k}]"
        check_type(entry, dict, path, where)
        extra = {
            n: v for n, v in entry.items() if n not in ("image_id", "box", "category_id", "score")
        }
        score = _optional(entry, "score", (int, float), path, where)
        detections.append(
            Detection(
                image_id=get_field(entry, "image_id", int, path, where),
                box=_xywh(get_field(entry, "box", list, path, where), path, f"{where}.box"),
                category_id=_optional(entry, "category_id", int, path, where),
                score=None if score is None else float(score),
                extra=extra,
            )
        )
    return detections
