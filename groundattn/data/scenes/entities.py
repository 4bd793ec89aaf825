"""Writing captions and boxes as Flickr30k Entities files.

``Sentences/<image_id>.txt`` holds the five markup lines. ``Annotations/<image_id>.xml``
holds one ``<object>`` per scene object, in the scene's object order, named by
every chain grounded to it (the object's own chain first, then its groups'),
with its ``<bndbox>`` in 1-based inclusive pixels (``xmin = x1 + 1``,
``xmax = x2`` for the continuous box ``x1 y1 x2 y2``); then one box-less
``<object>`` per scene or no-box chain with its ``<nobndbox>`` and ``<scene>`` flags.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from groundattn.data.scenes.captions import Captions
from groundattn.data.scenes.world import Scene


def object_chains(captions: Captions, n_objects: int) -> list[list[int]]:
    """For each object, the ids of the chains grounded to it (own chain first)."""
    names: list[list[int]] = [[] for _ in range(n_objects)]
    for chain in captions.chains:  # sorted by id: object chains precede group chains
        for k in chain.objects:
            names[k].append(chain.chain_id)
    return names


def _add(parent: ET.Element, tag: str, text: str | int) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = str(text)
    return element


def annotation_xml(image_id: int, scene: Scene, captions: Captions) -> bytes:
    """The PASCAL-VOC-like annotation of one image."""
    root = ET.Element("annotation")
    _add(root, "filename", f"{image_id}.jpg")
    size = ET.SubElement(root, "size")
    _add(size, "width", scene.width)
    _add(size, "height", scene.height)
    _add(size, "depth", 3)
    for obj, names in zip(scene.objects, object_chains(captions, len(scene.objects)), strict=True):
        element = ET.SubElement(root, "object")
        for name in names:
            _add(element, "name", name)
        box = ET.SubElement(element, "bndbox")
        x1, y1, x2, y2 = (int(round(v)) for v in obj.box)
        for tag, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            _add(box, tag, value)
    for chain in captions.chains:
        if chain.kind in ("scene", "nobox"):
            element = ET.SubElement(root, "object")
            _add(element, "name", chain.chain_id)
            _add(element, "nobndbox", int(chain.kind == "nobox"))
            _add(element, "scene", int(chain.kind == "scene"))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8") + b"\n"


def write_entities(root: Path, image_id: int, scene: Scene, captions: Captions) -> None:
    """Writes the sentence and annotation files of one image under ``root``."""
    (root / "Sentences" / f"{image_id}.txt").write_text(
        "\n".join(captions.lines) + "\n", encoding="utf-8"
    )
    (root / "Annotations" / f"{image_id}.xml").write_bytes(
        annotation_xml(image_id, scene, captions)
    )


def write_splits(root: Path, splits: dict[str, list[int]]) -> None:
    """Writes ``train.txt``, ``val.txt`` and ``test.txt``: image ids, one per line."""
    for split, ids in splits.items():
        (root / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
