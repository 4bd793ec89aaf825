"""VGP phrase pairs: the attribute rule, swapped pairs, and the CSV files."""

import csv
from collections import Counter
from pathlib import Path

import pytest

from groundattn.data.scenes.vgp import LABEL_NAMES, vgp_label

SWAP = {0: 0, 1: 2, 2: 1, 3: 3, 4: 4}
LARGE_RED_CIRCLE = {"size": "large", "colour": "red", "shape": "circle"}


@pytest.mark.parametrize(
    ("first", "second", "label"),
    [
        ({"colour": "red", "shape": "circle"}, {"colour": "red", "shape": "circle"}, 3),
        (LARGE_RED_CIRCLE, {"shape": "circle"}, 1),
        ({"shape": "circle"}, LARGE_RED_CIRCLE, 2),
        ({"colour": "red"}, {"shape": "circle"}, 0),
        ({"colour": "red", "shape": "circle"}, {"size": "large", "colour": "red"}, 0),
        ({}, {"location": "middle left"}, 4),
        ({}, LARGE_RED_CIRCLE, 4),
        ({"colour": "red"}, {"location": "top centre"}, 4),
        ({}, {}, 3),
        ({"count": 2, "colour": "red"}, {"colour": "red"}, 1),
        ({"count": 2}, {"colour": "red"}, 4),
        ({"colour": "red", "location": "top left"}, {"location": "top left"}, 1),
    ],
)
def test_label_follows_what_the_phrases_state(first: dict, second: dict, label: int) -> None:
    assert vgp_label(first, second) == label
    assert vgp_label(second, first) == SWAP[label]


def _rows(root: Path, split: str) -> list[dict]:
    with open(root / "vgp" / f"{split}.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_rows_are_grounded_pairs_labelled_by_the_rule(scenes_dir: Path, world: dict) -> None:
    for split in ("train", "val", "test"):
        rows = _rows(scenes_dir, split)
        records = [p for r in world.values() if r["split"] == split for p in r["vgp"]]
        assert len(rows) == len(records) > 0
        for row in rows:
            record = world[int(row["image"])]
            assert record["split"] == split
            assert row["phrase1"] == row["original_phrase1"].lower()
            assert row["phrase2"] == row["original_phrase2"].lower()
            phrases = {p["text"]: p for p in record["phrases"]}
            first, second = phrases[row["original_phrase1"]], phrases[row["original_phrase2"]]
            assert first["chain_id"] == second["chain_id"] != 0
            assert first["caption"] != second["caption"]
            assert int(row["type_label"]) == vgp_label(first["attributes"], second["attributes"])
            sentences = (scenes_dir / "Sentences" / f"{row['image']}.txt").read_text().splitlines()
            assert row["original_phrase1"] + "]" in sentences[first["caption"]]
            assert row["original_phrase2"] + "]" in sentences[second["caption"]]


def test_every_class_is_present_and_roughly_balanced(scenes_dir: Path) -> None:
    counts = Counter(int(row["type_label"]) for row in _rows(scenes_dir, "train"))
    assert set(counts) == set(range(len(LABEL_NAMES)))
    assert max(counts.values()) <= 3 * min(counts.values())
