"""Flickr30k Entities files: caption markup, chains and their boxes, splits."""

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

PHRASE = re.compile(r"\[/EN#(\d+)/([a-z]+(?:/[a-z]+)*) ([^\[\]]+)\]")
NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def _image_ids(root: Path) -> list[str]:
    return [i for s in ("train", "val", "test") for i in (root / f"{s}.txt").read_text().split()]


def _phrases(root: Path, image_id: str) -> list[tuple[int, int, str, str]]:
    """(caption index, chain id, types, text) of every phrase."""
    lines = (root / "Sentences" / f"{image_id}.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5
    found = []
    for i, line in enumerate(lines):
        assert "[" not in PHRASE.sub("", line) and "]" not in PHRASE.sub("", line)
        found += [(i, int(c), t, text) for c, t, text in PHRASE.findall(line)]
    return found


def _annotation(root: Path, image_id: str) -> tuple[dict, dict, ET.Element]:
    """Boxes per chain id, box-less flags per chain id, and the root element."""
    tree = ET.parse(root / "Annotations" / f"{image_id}.xml").getroot()
    boxes, flags = defaultdict(list), {}
    for obj in tree.findall("object"):
        names = [int(n.text) for n in obj.findall("name")]
        box = obj.find("bndbox")
        for name in names:
            if box is not None:
                boxes[name].append(
                    tuple(int(box.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax"))
                )
            else:
                flags[name] = (int(obj.find("nobndbox").text), int(obj.find("scene").text))
    return boxes, flags, tree


def test_splits_partition_the_images(scenes_dir: Path, world: dict) -> None:
    ids = _image_ids(scenes_dir)
    assert len(ids) == len(set(ids)) == len(world) == 60
    for split in ("train", "val", "test"):
        for image_id in (scenes_dir / f"{split}.txt").read_text().split():
            assert world[int(image_id)]["split"] == split
            assert (scenes_dir / "images" / f"{image_id}.jpg").is_file()


def test_every_grounded_chain_has_boxes_or_a_flag(scenes_dir: Path) -> None:
    kinds = defaultdict(int)
    for image_id in _image_ids(scenes_dir):
        boxes, flags, root = _annotation(scenes_dir, image_id)
        assert root.find("filename").text == f"{image_id}.jpg"
        assert [root.find(f"size/{t}").text for t in ("width", "height", "depth")] == [
            "128",
            "128",
            "3",
        ]
        for _, chain, types, text in _phrases(scenes_dir, image_id):
            if chain == 0:
                assert types == "notvisual"
                kinds["notvisual"] += 1
                continue
            assert chain in boxes or chain in flags, (image_id, chain, text)
            if chain in flags:
                nobox, scene = flags[chain]
                assert nobox + scene == 1 and ("scene" in types.split("/")) == bool(scene)
                kinds["scene" if scene else "nobox"] += 1
            for xmin, ymin, xmax, ymax in boxes.get(chain, []):
                assert 1 <= xmin <= xmax <= 128 and 1 <= ymin <= ymax <= 128
            words = text.lower().split()
            if words[0] in NUMBERS or (words[0] == "the" and words[1] in NUMBERS):
                assert len(boxes[chain]) == NUMBERS[words[0] if words[0] in NUMBERS else words[1]]
            if words[0] == "both":
                assert len(boxes[chain]) == 2
            kinds["multi" if len(boxes.get(chain, [])) > 1 else "single"] += 1
    assert all(kinds[k] > 0 for k in ("notvisual", "scene", "nobox", "multi", "single")), kinds


def test_xml_boxes_are_the_world_boxes_one_based(scenes_dir: Path, world: dict) -> None:
    for image_id, record in world.items():
        _, _, root = _annotation(scenes_dir, str(image_id))
        objects = [o for o in root.findall("object") if o.find("bndbox") is not None]
        assert len(objects) == len(record["objects"])
        for element, obj in zip(objects, record["objects"], strict=True):
            box = [int(element.find(f"bndbox/{t}").text) for t in ("xmin", "ymin", "xmax", "ymax")]
            x1, y1, x2, y2 = obj["box"]
            assert box == [x1 + 1, y1 + 1, x2, y2]
            assert [int(n.text) for n in element.findall("name")] == obj["chain_ids"]


def test_chains_corefer_across_captions_in_other_words(scenes_dir: Path) -> None:
    coreferring = 0
    for image_id in _image_ids(scenes_dir):
        phrases = _phrases(scenes_dir, image_id)
        texts = [text.lower() for _, _, _, text in phrases]
        assert len(texts) == len(set(texts)), "a phrase's text must find its caption"
        by_chain = defaultdict(set)
        for caption, chain, _, _ in phrases:
            if chain:
                assert caption not in by_chain[chain], "a chain is named once per caption"
                by_chain[chain].add(caption)
        coreferring += sum(len(c) > 1 for c in by_chain.values())
    assert coreferring > 100


def test_every_object_is_named(scenes_dir: Path, world: dict) -> None:
    for image_id, record in world.items():
        named = {chain for _, chain, _, _ in _phrases(scenes_dir, str(image_id))}
        assert all(obj["chain_ids"][0] in named for obj in record["objects"])


def test_phrase_records_match_the_markup(scenes_dir: Path, world: dict) -> None:
    for image_id, record in world.items():
        found = [(c, chain, text) for c, chain, _, text in _phrases(scenes_dir, str(image_id))]
        expected = [(p["caption"], p["chain_id"], p["text"]) for p in record["phrases"]]
        assert found == expected


def test_stated_attributes_hold_for_what_a_phrase_names(world: dict) -> None:
    for record in world.values():
        chains = {c["chain_id"]: c for c in record["chains"]}
        for phrase in record["phrases"]:
            if phrase["chain_id"] == 0:
                continue
            chain, attributes = chains[phrase["chain_id"]], phrase["attributes"]
            objects = [record["objects"][k] for k in chain["objects"]]
            if chain["kind"] == "scene":
                assert attributes.get("background", record["background"]) == record["background"]
            if chain["kind"] == "group":
                assert attributes.get("count", len(objects)) == len(objects)
            for key in ("colour", "shape", "size"):
                assert all(o[key] == attributes.get(key, o[key]) for o in objects), phrase
            if "location" in attributes:
                (obj,) = objects
                row, col = attributes["location"].split()
                cx, cy = (obj["box"][0] + obj["box"][2]) / 2, (obj["box"][1] + obj["box"][3]) / 2
                assert row == ("top" if cy < 128 / 3 else "bottom" if cy > 256 / 3 else "middle")
                assert col == ("left" if cx < 128 / 3 else "right" if cx > 256 / 3 else "centre")
