"""Tests of groundattn/data/refcoco.py: restricted unpickling, refs, instances, detections."""

import collections
import copy
import json
import os
import pickle
from pathlib import Path

import pytest

from groundattn.data.errors import FormatError, UnsafePickleError
from groundattn.data.refcoco import load_detections, load_instances, load_plain_pickle, load_refs

REFCOCO = Path(__file__).parent / "fixtures" / "refcoco"

REFS = [
    {
        "ref_id": 0,
        "ann_id": 100,
        "image_id": 7,
        "split": "testA",
        "category_id": 1,
        "sent_ids": [0, 1],
        "sentences": [
            {
                "sent_id": 0,
                "sent": "man on left",
                "raw": "Man on left.",
                "tokens": ["man", "on", "left"],
            },
            {"sent_id": 1, "sent": "left guy", "raw": "left guy", "tokens": ["left", "guy"]},
        ],
        "file_name": "COCO_train2014_000000000007_100.jpg",
    },
    {
        "ref_id": 1,
        "ann_id": 101,
        "image_id": 7,
        "split": "train",
        "category_id": 18,
        "sent_ids": [2],
        "sentences": [{"sent_id": 2, "sent": "dog"}],  # raw and tokens absent
    },
]


def _dump(tmp_path, data, protocol=pickle.HIGHEST_PROTOCOL, name="refs(unc).p"):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_load_refs(tmp_path, protocol):
    refs = load_refs(_dump(tmp_path, REFS, protocol))
    assert [r.ref_id for r in refs] == [0, 1]
    first = refs[0]
    assert (first.ann_id, first.image_id, first.split, first.category_id) == (100, 7, "testA", 1)
    assert first.sent_ids == (0, 1)
    assert first.sentences[0].raw == "Man on left." and first.sentences[0].tokens == (
        "man",
        "on",
        "left",
    )
    assert first.file_name == "COCO_train2014_000000000007_100.jpg"
    second = refs[1].sentences[0]
    assert (second.raw, second.tokens) == ("dog", ("dog",))
    assert refs[1].file_name is None


def test_plain_pickle_scalars_and_containers(tmp_path):
    data = {"a": [1, 2.5, True, None, b"raw", ("t", 1)], "s": {1, 2}, "f": frozenset({3})}
    assert load_plain_pickle(_dump(tmp_path, data)) == data


def test_python2_byte_strings_decode_as_utf8(tmp_path):
    # Protocol 2 as written by Python 2: {'sent': 'caf\xc3\xa9'} with SHORT_BINSTRING.
    path = tmp_path / "py2.p"
    path.write_bytes(b"\x80\x02}q\x00U\x04sentq\x01U\x05caf\xc3\xa9q\x02s.")
    assert load_plain_pickle(path) == {"sent": "café"}


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _WritesFile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload", [_RunsShell, _WritesFile])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_pickle_is_refused_before_it_runs(tmp_path, payload, protocol):
    marker = tmp_path / "pwned"
    data = copy.deepcopy(REFS) + [payload(marker)]
    path = _dump(tmp_path, data, protocol)
    with pytest.raises(UnsafePickleError, match="refused to load") as info:
        load_refs(path)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(str(path))
    assert not marker.exists()


def test_payloads_are_live_under_plain_pickle(tmp_path):
    """Control: the file-writing payload does have a side effect when unpickled unrestricted."""
    marker = tmp_path / "pwned"
    result = pickle.loads(
        pickle.dumps(_WritesFile(marker))
    )  # the one unrestricted load, on purpose
    if hasattr(result, "close"):
        result.close()
    assert marker.exists()


def test_harmless_classes_are_refused_too(tmp_path):
    path = _dump(tmp_path, collections.OrderedDict(a=1))
    with pytest.raises(UnsafePickleError, match="collections.OrderedDict"):
        load_plain_pickle(path)


def test_not_a_pickle(tmp_path):
    path = tmp_path / "refs.p"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(FormatError, match="not a valid pickle"):
        load_refs(path)
    for data in (pickle.dumps(REFS)[:-10], b"}}b.", b"(I1\nI2\nR.", b"\x80\x02\x82\x01."):
        path.write_bytes(data)
        with pytest.raises(FormatError, match="not a valid pickle"):
            load_refs(path)


def _broken(index, **changes):
    refs = copy.deepcopy(REFS)
    for key, value in changes.items():
        if value is None:
            del refs[index][key]
        else:
            refs[index][key] = value
    return refs


@pytest.mark.parametrize(
    ("refs", "field", "message"),
    [
        ({"refs": REFS}, "refs", "expected list, got dict"),
        (_broken(1, split="test"), "refs[1].split", "expected one of"),
        (_broken(0, ann_id=None), "refs[0].ann_id", "missing field"),
        (_broken(1, image_id="7"), "refs[1].image_id", "expected int, got str"),
        (_broken(1, sentences=[]), "refs[1].sentences", "at least one sentence"),
        (
            _broken(1, sentences=[{"sent_id": 2, "sent": 3}]),
            "refs[1].sentences[0].sent",
            "expected str",
        ),
        (_broken(1, sentences=[{"sent": "dog"}]), "refs[1].sentences[0].sent_id", "missing field"),
        (_broken(0, sent_ids=[0, 5]), "refs[0].sent_ids", "differ from the sentences' ids"),
        (_broken(0, category_id=True), "refs[0].category_id", "expected int, got bool"),
    ],
)
def test_load_refs_malformed_names_ref_and_field(tmp_path, refs, field, message):
    path = _dump(tmp_path, refs)
    with pytest.raises(FormatError, match=message) as info:
        load_refs(path)
    assert info.value.field == field
    assert str(info.value).startswith(f"{path}, field {field}: ")


def test_load_instances():
    instances = load_instances(REFCOCO / "instances.json")
    assert sorted(instances.images) == [7, 8]
    assert instances.images[8].width == 320 and instances.images[8].file_name.endswith("8.jpg")
    assert instances.categories == {1: "person", 18: "dog"}
    ann = instances.annotations[100]
    assert (ann.image_id, ann.category_id, ann.bbox) == (7, 1, (10.5, 20.0, 100.0, 50.25))
    assert ann.box_xyxy == (10.5, 20.0, 110.5, 70.25)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            lambda d: d["annotations"][1].update(image_id=9),
            "annotations[1].image_id",
            "unknown image 9",
        ),
        (
            lambda d: d["annotations"][2].update(category_id=2),
            "annotations[2].category_id",
            "unknown category",
        ),
        (
            lambda d: d["annotations"][0].update(bbox=[1, 2, 3]),
            "annotations[0].bbox",
            "expected [x, y, w, h]",
        ),
        (
            lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4]),
            "annotations[0].bbox",
            "w, h >= 0",
        ),
        (
            lambda d: d["annotations"][0].update(bbox=[1, "2", 3, 4]),
            "annotations[0].bbox[1]",
            "expected int/float",
        ),
        (lambda d: d["annotations"][0].pop("bbox"), "annotations[0].bbox", "missing field"),
        (
            lambda d: d["annotations"][1].update(id=100),
            "annotations[1].id",
            "repeated annotation id",
        ),
        (lambda d: d["images"][1].pop("width"), "images[1].width", "missing field"),
        (lambda d: d.pop("categories"), "categories", "missing field"),
        (lambda d: d.update(images={}), "images", "expected list, got dict"),
    ],
)
def test_load_instances_malformed(tmp_path, change, field, message):
    data = json.loads((REFCOCO / "instances.json").read_text())
    change(data)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    with pytest.raises(FormatError) as info:
        load_instances(path)
    assert message in str(info.value)
    assert info.value.field == field


def test_load_detections_keeps_extra_fields():
    detections = load_detections(REFCOCO / "detections.json")
    first, _, last = detections
    assert (first.image_id, first.box, first.category_id, first.score) == (
        7,
        (12.0, 18.0, 98.0, 55.0),
        1,
        0.98,
    )
    assert first.extra == {"det_id": 1, "h5_id": 0, "category_name": "person"}
    assert first.box_xyxy == (12.0, 18.0, 110.0, 73.0)
    assert (last.category_id, last.score, last.extra) == (None, None, {})


def test_load_detections_malformed(tmp_path):
    path = tmp_path / "dets.json"
    path.write_text(
        json.dumps(
            [
                {"image_id": 1, "box": [0, 0, 1, 1]},
                {"image_id": 2, "score": "high", "box": [0, 0, 1, 1]},
            ]
        )
    )
    with pytest.raises(FormatError, match=r"field \[1\].score: expected int/float, got str"):
        load_detections(path)
    path.write_text(json.dumps([{"image_id": 1}]))
    with pytest.raises(FormatError, match=r"field \[0\].box: missing field"):
        load_detections(path)
    path.write_text('[{"image_id": 1,\n "box": [0, 0, 1, 1]\n')
    with pytest.raises(FormatError, match="line 3: invalid JSON"):
        load_detections(path)
