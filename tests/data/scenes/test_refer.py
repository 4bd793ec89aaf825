"""Refer-format files: plain pickle, splits, expressions and the simulated detector."""

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from groundattn.data.scenes.describe import Description, matches
from groundattn.data.scenes.world import SHAPES, Scene, SceneObject


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 - refuses every global
        raise pickle.UnpicklingError(f"refused {module}.{name}")


@pytest.fixture(scope="module")
def refs(scenes_dir: Path) -> list[dict]:
    data = (scenes_dir / "refcoco+" / "refs(unc).p").read_bytes()
    assert data[:2] == b"\x80\x04"  # protocol 4
    return _PlainUnpickler(io.BytesIO(data)).load()


@pytest.fixture(scope="module")
def instances(scenes_dir: Path) -> dict:
    return json.loads((scenes_dir / "refcoco+" / "instances.json").read_text())


def _scene(record: dict) -> Scene:
    objects = tuple(
        SceneObject(o["shape"], o["colour"], o["size"], tuple(o["rgb"]), tuple(o["box"]))
        for o in record["objects"]
    )
    return Scene(record["width"], record["height"], record["background"], 0, objects)


def _description(d: dict) -> Description:
    anchor = _description(d["anchor"]) if "anchor" in d else None
    return Description(**{k: v for k, v in d.items() if k != "anchor"}, anchor=anchor)


def _iou(a: list[float], b: list[float]) -> float:
    """IoU of two x y w h boxes."""
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def test_refs_have_the_refer_fields(refs: list[dict], instances: dict) -> None:
    annotations = {a["id"]: a for a in instances["annotations"]}
    assert [c["name"] for c in instances["categories"]] == list(SHAPES)
    sent_ids = [s["sent_id"] for r in refs for s in r["sentences"]]
    assert len(sent_ids) == len(set(sent_ids))
    assert [r["ref_id"] for r in refs] == list(range(len(refs)))
    for r in refs:
        assert r["sent_ids"] == [s["sent_id"] for s in r["sentences"]]
        annotation = annotations[r["ann_id"]]
        assert annotation["image_id"] == r["image_id"]
        assert annotation["category_id"] == r["category_id"]
        assert r["file_name"].rsplit("_", 1)[0] == str(r["image_id"])
        for s in r["sentences"]:
            assert s["sent"] == s["raw"].lower() and s["tokens"] == s["sent"].split()


def test_splits_follow_the_testa_testb_rule(refs: list[dict], world: dict) -> None:
    seen = set()
    for r in refs:
        record = world[r["image_id"]]
        single_shape = len({o["shape"] for o in record["objects"]}) == 1
        expected = record["split"] if record["split"] != "test" else "testB"
        if record["split"] == "test" and single_shape:
            expected = "testA"
        assert r["split"] == expected
        seen.add(r["split"])
    assert seen == {"train", "val", "testA", "testB"}


def test_expressions_pick_out_their_object(refs: list[dict], world: dict) -> None:
    with_distractor = 0
    for r in refs:
        record = world[r["image_id"]]
        (ref,) = [x for x in record["refs"] if x["ref_id"] == r["ref_id"]]
        assert ref["sentences"] == [s["raw"] for s in r["sentences"]]
        target = ref["object_index"]
        scene = _scene(record)
        for d in ref["descriptions"]:
            assert matches(scene, _description(d)) == [target]
        obj = scene.objects[target]
        others = scene.objects[:target] + scene.objects[target + 1 :]
        with_distractor += any(o.shape == obj.shape or o.colour == obj.colour for o in others)
    assert with_distractor > 0.8 * len(refs)


def test_detections_overlap_the_objects_without_copying_them(
    scenes_dir: Path, instances: dict
) -> None:
    detections = json.loads((scenes_dir / "refcoco+" / "detections.json").read_text())
    assert all(set(d) == {"image_id", "box", "category_id", "score"} for d in detections)
    by_image: dict[int, list] = {}
    for d in detections:
        by_image.setdefault(d["image_id"], []).append(d["box"])
    best, false_alarms = [], 0
    for a in instances["annotations"]:
        boxes = by_image.get(a["image_id"], [])
        assert a["bbox"] not in boxes
        best.append(max((_iou(a["bbox"], b) for b in boxes), default=0.0))
    for image_id, boxes in by_image.items():
        objects = [a["bbox"] for a in instances["annotations"] if a["image_id"] == image_id]
        false_alarms += sum(max(_iou(b, o) for o in objects) < 0.3 for b in boxes)
    best = np.array(best)
    assert 0.8 < (best >= 0.5).mean() < 1.0  # most are found, some missed
    assert false_alarms > 0
