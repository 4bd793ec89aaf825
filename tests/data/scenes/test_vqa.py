"""VQAv2 files: schema, ten answers, and answers right for the rendered world."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from groundattn.data.scenes.world import COLOURS

MARGIN = 10.0


def _centre(o: dict) -> tuple[float, float]:
    return (o["box"][0] + o["box"][2]) / 2, (o["box"][1] + o["box"][3]) / 2


def _holds(a: dict, b: dict, relation: str) -> bool:
    (ax, ay), (bx, by) = _centre(a), _centre(b)
    return {
        "left of": ax + MARGIN < bx,
        "right of": bx + MARGIN < ax,
        "above": ay + MARGIN < by,
        "below": by + MARGIN < ay,
    }[relation]


def _select(objects: list[dict], d: dict) -> list[int]:
    """An independent reading of a description record."""
    keys = ("size", "colour", "shape")
    left = [k for k, o in enumerate(objects) if all(o[a] == d[a] for a in keys if a in d)]
    if "relation" in d:
        (anchor,) = _select(objects, d["anchor"])
        left = [
            k for k in left if k != anchor and _holds(objects[k], objects[anchor], d["relation"])
        ]
    if "extreme" in d:
        axis, sign = {"left": (0, 1), "right": (0, -1), "top": (1, 1), "bottom": (1, -1)}[
            d["extreme"]
        ]
        values = {k: sign * _centre(objects[k])[axis] for k in left}
        best = min(values, key=values.get)
        assert all(values[k] >= values[best] + MARGIN for k in left if k != best)
        left = [best]
    return left


def _load(root: Path, split: str) -> tuple[list, list]:
    questions = json.loads((root / "vqa" / f"v2_OpenEnded_{split}_questions.json").read_text())
    annotations = json.loads((root / "vqa" / f"v2_{split}_annotations.json").read_text())
    return questions["questions"], annotations["annotations"]


def test_files_follow_the_vqa_schema(scenes_dir: Path) -> None:
    ids = []
    for split in ("train", "val", "test"):
        questions, annotations = _load(scenes_dir, split)
        assert [q["question_id"] for q in questions] == [a["question_id"] for a in annotations]
        ids += [q["question_id"] for q in questions]
        for a in annotations:
            assert a["answer_type"] in ("yes/no", "number", "other")
            assert [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
            assert all(x["answer_confidence"] in ("yes", "maybe", "no") for x in a["answers"])
            top, n = Counter(x["answer"] for x in a["answers"]).most_common(1)[0]
            assert top == a["multiple_choice_answer"] and n >= 5
            if a["answer_type"] == "number":
                assert a["multiple_choice_answer"].isdigit()
    assert len(ids) == len(set(ids)) == 300


def test_answers_are_right_for_the_world(scenes_dir: Path, world: dict) -> None:
    kinds = Counter()
    for split in ("train", "val", "test"):
        questions, annotations = _load(scenes_dir, split)
        records = {q["question_id"]: q for r in world.values() for q in r["questions"]}
        for q, a in zip(questions, annotations, strict=True):
            record, objects = records[q["question_id"]], world[q["image_id"]]["objects"]
            query, answer = record["query"], a["multiple_choice_answer"]
            assert record["question"] == q["question"] and record["answer"] == answer
            kind = query["kind"]
            kinds[kind] += 1
            if kind in ("colour", "shape"):
                target = query["target"]
                assert _select(objects, query["description"]) == [target]
                assert kind not in query["description"]  # the question does not give it away
                assert answer == objects[target][kind]
            elif kind == "count":
                assert int(answer) == len(_select(objects, query["description"]))
            elif kind == "exist":
                assert (answer == "yes") == bool(_select(objects, query["description"]))
            else:
                subject, obj = objects[query["subject"]], objects[query["object"]]
                assert (answer == "yes") == _holds(subject, obj, query["relation"])
    assert all(kinds[k] > 0 for k in ("colour", "shape", "count", "exist", "relation")), kinds


def test_colour_answers_match_the_pixels(scenes_dir: Path, world: dict) -> None:
    checked = 0
    for image_id, record in world.items():
        pixels = np.asarray(Image.open(scenes_dir / "images" / f"{image_id}.jpg"), dtype=float)
        objects = record["objects"]
        for q in record["questions"]:
            if q["query"]["kind"] != "colour":
                continue
            k = q["query"]["target"]
            cx, cy = (int(v) for v in _centre(objects[k]))
            later = objects[k + 1 :]
            if any(
                o["box"][0] <= cx <= o["box"][2] and o["box"][1] <= cy <= o["box"][3] for o in later
            ):
                continue  # covered by a later shape
            colour = pixels[cy - 1 : cy + 2, cx - 1 : cx + 2].reshape(-1, 3).mean(axis=0)
            nearest = min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - colour).sum())
            assert nearest == q["answer"]
            checked += 1
    assert checked > 10


def test_people_disagree_a_little(scenes_dir: Path) -> None:
    _, annotations = _load(scenes_dir, "train")
    unanimous = sum(len({x["answer"] for x in a["answers"]}) == 1 for a in annotations)
    words = sum(x["answer"] in ("two", "three", "one") for a in annotations for x in a["answers"])
    assert 0.2 * len(annotations) < unanimous < 0.8 * len(annotations)
    assert words > 0
