"""Tiny worlds whose answers a linear probe reads off one region's feature.

Each world is written in the published file formats (VQAv2 JSON, refer pickle
and COCO instances, Flickr30k Entities sentences and annotations, VGP CSV) with
an HDF5 feature store, so that the ordinary runs read it like any data set.

An image holds r0 (the whole image) and a few shapes, each of one colour. A
region's feature is a one-hot colour block plus a large offset shared by every
dimension plus noise, like real features that share a big common part
(histograms, ReLU outputs): the colour is a linear function of the feature, but
only after the common part is taken away. The whole-image feature r0 carries
no colour, so the answer has to be read off the object's region.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np

from groundattn.data.scenes.entities import write_splits
from groundattn.data.scenes.refer import write_refer, xywh
from groundattn.data.scenes.vgp import CSV_COLUMNS
from groundattn.data.scenes.vqa import SceneQuestion, write_vqa
from groundattn.data.store import FeatureStoreWriter, Provenance, RegionFeatures

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "pink", "brown")
GREY = len(COLOURS)  # the feature dimension of the grey distractor
FEATURE_DIM = 16  # colours, grey, then dimensions of noise only
OFFSET = 8.0  # the part every region shares, in every dimension
NOISE = 0.2  # per dimension
SHIFT = 1.0  # a region's brightness: up to this much more in every dimension
SIZE = 128  # image side, pixels
# Four cells of the image, one shape each: boxes of different shapes never overlap.
CELLS = ((4, 4), (68, 4), (4, 68), (68, 68))
VQA_QUESTION = "what color is the shape?"


def _feature(rng: np.random.Generator, colour: int | None) -> np.ndarray:
    """(F,) float32: offset, shift and noise, plus 1 in the colour's dimension (none for r0)."""
    feature = OFFSET + SHIFT * rng.uniform(0.0, 1.0) + NOISE * rng.standard_normal(FEATURE_DIM)
    if colour is not None:
        feature[colour] += 1.0
    return feature.astype(np.float32)


def _box(rng: np.random.Generator, cell: int) -> list[float]:
    """A box ``x1 y1 x2 y2`` of side 30 to 50 inside one of the four cells."""
    x0, y0 = CELLS[cell]
    w, h = rng.uniform(30, 50, 2)
    x1, y1 = x0 + rng.uniform(0, 56 - w), y0 + rng.uniform(0, 56 - h)
    return [round(float(v), 2) for v in (x1, y1, x1 + w, y1 + h)]


def _regions(
    rng: np.random.Generator, colours: list[int], boxes: list[list[float]], provenance: Provenance
) -> RegionFeatures:
    """r0 then one region per shape."""
    whole = [0.0, 0.0, float(SIZE), float(SIZE)]
    return RegionFeatures(
        boxes=np.array([whole, *boxes], np.float32),
        features=np.stack([_feature(rng, None), *(_feature(rng, c) for c in colours)]),
        provenance=np.array([Provenance.WHOLE_IMAGE] + [provenance] * len(colours), np.uint8),
        width=SIZE,
        height=SIZE,
    )


def _image_ids(splits: dict[str, int]) -> dict[str, list[int]]:
    ids, start = {}, 1
    for split, n in splits.items():
        ids[split] = list(range(start, start + n))
        start += n
    return ids


def write_vqa_world(
    root: Path, splits: dict[str, int], *, colours: int = 6, distractor: bool = True, seed: int = 0
) -> Path:
    """VQAv2 files and detected regions: "what color is the shape?", answered by its colour.

    Each image holds one shape of one of ``colours`` colours and, with
    ``distractor``, a grey shape (not an answer), the two in random order.
    Writes ``vqa/`` and ``features/<split>.h5`` under ``root``; returns ``root``.
    """
    rng = np.random.default_rng(seed)
    for split, image_ids in _image_ids(splits).items():
        items = []
        with FeatureStoreWriter(root / "features" / f"{split}.h5", FEATURE_DIM) as store:
            for image_id in image_ids:
                colour = int(rng.integers(colours))
                shapes = [colour, GREY] if distractor else [colour]
                order = rng.permutation(len(shapes))
                cells = rng.permutation(len(CELLS))[: len(shapes)]
                boxes = [_box(rng, int(c)) for c in cells]
                store.add(
                    image_id,
                    _regions(
                        rng,
                        [shapes[k] for k in order],
                        [boxes[k] for k in order],
                        Provenance.DETECTED,
                    ),
                )
                question = SceneQuestion(
                    image_id * 10, image_id, "colour", VQA_QUESTION, COLOURS[colour], {}
                )
                answers = [
                    {"answer": COLOURS[colour], "answer_confidence": "yes", "answer_id": k + 1}
                    for k in range(10)
                ]
                items.append((question, answers))
        write_vqa(root / "vqa", split, items)
    return root


CELL_WORDS = ("top left", "top right", "bottom left", "bottom right")  # of CELLS
SHAPES = ("circle", "square", "triangle", "star")


def _write_refer(
    root: Path,
    splits: dict[str, int],
    feature_dim: int,
    image: Callable[[np.random.Generator], tuple[RegionFeatures, list[str]]],
    seed: int,
) -> Path:
    """refer files and a ground-truth store of images made by ``image``: their regions (r0
    first) and the expression naming each shape. Every shape of a train image is a referent,
    one shape of each other image."""
    rng = np.random.default_rng(seed)
    refs, images, annotations = [], [], []
    for split, image_ids in _image_ids(splits).items():
        with FeatureStoreWriter(root / "features" / f"{split}.h5", feature_dim) as store:
            for image_id in image_ids:
                regions, sentences = image(rng)
                store.add(image_id, regions)
                images.append(
                    {"id": image_id, "file_name": f"{image_id}.jpg", "width": SIZE, "height": SIZE}
                )
                for k, box in enumerate(regions.boxes[1:].tolist()):
                    bbox = xywh(box)
                    annotations.append(
                        {"id": 10 * image_id + k, "image_id": image_id, "category_id": 1}
                        | {"bbox": bbox, "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0}
                    )
                shapes = len(sentences)
                referents = range(shapes) if split == "train" else [int(rng.integers(shapes))]
                for k in referents:
                    ref_id = len(refs)
                    sentence = {"sent_id": ref_id, "sent": sentences[k], "raw": sentences[k]}
                    refs.append(
                        {"ref_id": ref_id, "ann_id": 10 * image_id + k, "image_id": image_id}
                        | {"split": split, "category_id": 1, "sent_ids": [ref_id]}
                        | {"sentences": [sentence | {"tokens": sentences[k].split()}]}
                        | {"file_name": f"{image_id}_{ref_id}.jpg"}
                    )
    write_refer(root / "refcoco+", refs, images, annotations, [])  # category 1 of the shapes
    return root


def write_refer_world(
    root: Path,
    splits: dict[str, int],
    *,
    shapes: int = 4,
    colours: int = 6,
    by_place: bool = False,
    seed: int = 0,
) -> Path:
    """refer files and ground-truth regions: "the red shape" names the one red shape.

    Each image holds ``shapes`` shapes of distinct colours (of ``colours``), one
    per cell. With ``by_place`` the expression names the shape's cell instead
    ("the shape at the top left"): the referent is a linear function of its box,
    and the features do not tell it. Writes ``refcoco+/`` and
    ``features/<split>.h5``; returns ``root``.
    """

    def image(rng: np.random.Generator) -> tuple[RegionFeatures, list[str]]:
        chosen = [int(c) for c in rng.permutation(colours)[:shapes]]
        cells = rng.permutation(len(CELLS))[:shapes]
        boxes = [_box(rng, int(c)) for c in cells]
        sentences = [
            f"the shape at the {CELL_WORDS[int(cell)]}" if by_place else f"the {COLOURS[c]} shape"
            for c, cell in zip(chosen, cells, strict=True)
        ]
        return _regions(rng, chosen, boxes, Provenance.GROUND_TRUTH), sentences

    return _write_refer(root, splits, FEATURE_DIM, image, seed)


def write_conjunction_world(
    root: Path, splits: dict[str, int], *, shape_dims: int, seed: int = 0
) -> Path:
    """refer files: "the red circle" among a red circle, a red star, a blue circle and a blue star.

    Each image holds two colours × two shapes (of 4 each), one per cell: colour
    alone or shape alone leaves two candidates, so only their conjunction finds
    the referent. A region's feature is the colour block of :func:`_feature`
    (4 colours, one-hot) followed by ``shape_dims`` dimensions that hold a fixed
    random pattern of its shape, like a silhouette spread over many correlated
    values; every dimension shares the offset and brightness of :func:`_feature`.
    Both attributes are linear functions of the feature.
    """
    colours = 4
    patterns = np.random.default_rng(seed + 1).uniform(0.0, 1.0, (len(SHAPES), shape_dims))

    def feature(rng: np.random.Generator, colour: int | None, shape: int | None) -> np.ndarray:
        f = (
            OFFSET
            + SHIFT * rng.uniform(0.0, 1.0)
            + NOISE * rng.standard_normal(colours + shape_dims)
        )
        if colour is not None:
            f[colour] += 1.0
            f[colours:] += patterns[shape]
        return f.astype(np.float32)

    def image(rng: np.random.Generator) -> tuple[RegionFeatures, list[str]]:
        objects = [
            (int(c), int(s))
            for c in rng.permutation(colours)[:2]
            for s in rng.permutation(len(SHAPES))[:2]
        ]
        boxes = [_box(rng, int(cell)) for cell in rng.permutation(len(CELLS))]
        regions = RegionFeatures(
            boxes=np.array([[0.0, 0.0, float(SIZE), float(SIZE)], *boxes], np.float32),
            features=np.stack([feature(rng, None, None), *(feature(rng, *o) for o in objects)]),
            provenance=np.array([Provenance.WHOLE_IMAGE] + [Provenance.GROUND_TRUTH] * 4, np.uint8),
            width=SIZE,
            height=SIZE,
        )
        return regions, [f"the {COLOURS[c]} {SHAPES[s]}" for c, s in objects]

    return _write_refer(root, splits, colours + shape_dims, image, seed)


# Five captions per image; ``{}`` is the grounded phrase, which names the colour.
CAPTIONS = (
    "{} on a dark background .",
    "there is {} .",
    "a picture of {} .",
    "{} in the picture .",
    "we see {} here .",
)
PHRASES = ("a {} shape", "the {} object", "a {} thing", "one {} shape", "the {} shape")
CHAIN = "1"


def _annotation_xml(box: list[float]) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = "image.jpg"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", SIZE), ("height", SIZE), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    obj = ET.SubElement(root, "object")
    ET.SubElement(obj, "name").text = CHAIN
    bndbox = ET.SubElement(obj, "bndbox")
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
        ET.SubElement(bndbox, tag).text = str(value)
    return ET.tostring(root, encoding="utf-8") + b"\n"


def write_vgp_world(
    root: Path, splits: dict[str, int], *, colours: int = 8, seed: int = 0
) -> list[int]:
    """A Flickr30k Entities root with ``vgp/`` and ground-truth regions: captions name the colour.

    Each image holds one shape; its five captions each hold one phrase naming
    the shape's colour, grounded to it (one chain). The VGP CSV pairs the
    phrases of the first caption with those of the others (equivalence).
    Returns the colour index of every image, in image id order.
    """
    rng = np.random.default_rng(seed)
    (root / "Sentences").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    ids = _image_ids(splits)
    image_colours = []
    for split, image_ids in ids.items():
        rows = []
        with FeatureStoreWriter(root / "features" / f"{split}.h5", FEATURE_DIM) as store:
            for image_id in image_ids:
                colour = int(rng.integers(colours))
                image_colours.append(colour)
                box = _box(rng, int(rng.integers(len(CELLS))))
                store.add(image_id, _regions(rng, [colour], [box], Provenance.GROUND_TRUTH))
                phrases = [p.format(COLOURS[colour]) for p in PHRASES]
                lines = [
                    c.format(f"[/EN#{CHAIN}/other {p}]")
                    for c, p in zip(CAPTIONS, phrases, strict=True)
                ]
                (root / "Sentences" / f"{image_id}.txt").write_text("\n".join(lines) + "\n")
                (root / "Annotations" / f"{image_id}.xml").write_bytes(_annotation_xml(box))
                rows += [(f"{image_id}.jpg", phrases[0], p, phrases[0], p, 3) for p in phrases[1:]]
        (root / "vgp").mkdir(exist_ok=True)
        with open(root / "vgp" / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            writer.writerows(rows)
    write_splits(root, ids)
    return image_colours


def _annotation_of_chains(boxes: list[list[float]]) -> bytes:
    """An annotation whose chain ``k + 1`` is the box ``boxes[k]``."""
    root = ET.Element("annotation")
    size = ET.SubElement(root, "size")
    for tag, value in (("width", SIZE), ("height", SIZE), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for k, box in enumerate(boxes):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = str(k + 1)
        bndbox = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bndbox, tag).text = str(value)
    return ET.tostring(root, encoding="utf-8") + b"\n"


def write_phrase_world(
    root: Path,
    splits: dict[str, int],
    *,
    shapes: int = 4,
    colours: int = 6,
    captions: int = 2,
    mentioned: int | None = None,
    seed: int = 0,
) -> Path:
    """A Flickr30k Entities root with ground-truth regions: each phrase names one shape's colour.

    Each image holds ``shapes`` shapes of distinct colours (of ``colours``), one
    per cell; each of its ``captions`` captions names ``mentioned`` of them (all
    by default), drawn in a random order, each as a phrase ``a <colour> shape``
    grounded to it ("a red shape , a blue shape and a green shape ."). Which of
    the named boxes a sample asks for is said only by the phrase marked in the
    caption. Writes ``Sentences/``,
    ``Annotations/``, the split files and ``features/<split>.h5``; returns ``root``.
    """
    rng = np.random.default_rng(seed)
    (root / "Sentences").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    ids = _image_ids(splits)
    for split, image_ids in ids.items():
        with FeatureStoreWriter(root / "features" / f"{split}.h5", FEATURE_DIM) as store:
            for image_id in image_ids:
                chosen = [int(c) for c in rng.permutation(colours)[:shapes]]
                cells = rng.permutation(len(CELLS))[:shapes]
                boxes = [_box(rng, int(c)) for c in cells]
                store.add(image_id, _regions(rng, chosen, boxes, Provenance.GROUND_TRUTH))
                lines = []
                for _ in range(captions):
                    phrases = [
                        f"[/EN#{k + 1}/other a {COLOURS[chosen[k]]} shape]"
                        for k in rng.permutation(shapes)[: mentioned or shapes]
                    ]
                    lines.append(" , ".join(phrases[:-1]) + f" and {phrases[-1]} .")
                (root / "Sentences" / f"{image_id}.txt").write_text("\n".join(lines) + "\n")
                (root / "Annotations" / f"{image_id}.xml").write_bytes(_annotation_of_chains(boxes))
    write_splits(root, ids)
    return root
