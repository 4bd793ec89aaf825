"""Phrase-grounding samples: counts, targets and segments on a hand-made root; batches."""

import numpy as np
import pytest
import torch

from groundattn.data.store import FeatureStoreWriter, Provenance, RegionFeatures
from groundattn.errors import MissingFileError
from groundattn.tasks.phrase_grounding import (
    PHRASE_SEGMENT,
    PhraseGroundingDataset,
    collate_phrase_grounding,
)

CAPTIONS = (
    "[/EN#1/people A man] in [/EN#2/clothing a red hat] looks at [/EN#3/scene the sky] .\n"
    "[/EN#0/notvisual It] is [/EN#1/people a man] with [/EN#4/people two friends] .\n"
)
# Pixel boxes x1 y1 x2 y2 (continuous): the man A, the hat B, the two friends C and D.
A, B, C, D = [10, 10, 50, 90], [20, 0, 40, 12], [60, 10, 80, 90], [85, 10, 100, 90]
ANNOTATION = """<annotation><size><width>100</width><height>100</height><depth>3</depth></size>
<object><name>1</name><bndbox><xmin>11</xmin><ymin>11</ymin><xmax>50</xmax><ymax>90</ymax></bndbox></object>
<object><name>2</name><bndbox><xmin>21</xmin><ymin>1</ymin><xmax>40</xmax><ymax>12</ymax></bndbox></object>
<object><name>4</name><bndbox><xmin>61</xmin><ymin>11</ymin><xmax>80</xmax><ymax>90</ymax></bndbox></object>
<object><name>4</name><bndbox><xmin>86</xmin><ymin>11</ymin><xmax>100</xmax><ymax>90</ymax></bndbox></object>
<object><name>3</name><scene>1</scene></object>
</annotation>
"""
# Detections: close to A (IoU 0.8), close to C (IoU 0.81), one on nothing; the hat is missed.
DETECTED = [[10, 10, 50, 74], [60, 10, 80, 75], [0, 90, 30, 100]]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("flickr")
    (root / "Sentences").mkdir()
    (root / "Annotations").mkdir()
    (root / "Sentences" / "7.txt").write_text(CAPTIONS)
    (root / "Annotations" / "7.xml").write_text(ANNOTATION)
    (root / "val.txt").write_text("7\n")
    boxes = [[0, 0, 100, 100], A, B, C, D, *DETECTED]
    provenance = [Provenance.WHOLE_IMAGE] + [Provenance.GROUND_TRUTH] * 4
    provenance += [Provenance.DETECTED] * 3
    features = np.arange(len(boxes) * 4, dtype=np.float32).reshape(len(boxes), 4)
    with FeatureStoreWriter(root / "features" / "val.h5", 4) as store:
        store.add(
            7,
            RegionFeatures(
                boxes=np.array(boxes, np.float32),
                features=features,
                provenance=np.array(provenance, np.uint8),
                width=100,
                height=100,
            ),
        )
    return root


def test_ground_truth_samples_and_counts_by_hand(root, tokenizer):
    dataset = PhraseGroundingDataset(root, "val", tokenizer, boxes="ground_truth")
    # "the sky" is a scene (no box), "It" not visual: 4 samples of 6 phrases.
    assert [(s.caption, s.chain_id, s.text) for s in dataset.samples] == [
        (0, "1", "A man"),
        (0, "2", "a red hat"),
        (1, "1", "a man"),
        (1, "4", "two friends"),
    ]
    assert dataset.excluded == {"not_visual": 1, "no_box": 1, "cut_off": 0}
    assert sum(dataset.dropped.values()) == 2
    # Regions r0, A, B, C, D: each entity its own boxes, "two friends" both of theirs.
    assert dataset.targets == [
        [False, True, False, False, False],
        [False, False, True, False, False],
        [False, True, False, False, False],
        [False, False, False, True, True],
    ]
    assert dataset.answerable == 1.0


def test_detected_candidates_miss_the_hat(root, tokenizer):
    dataset = PhraseGroundingDataset(root, "val", tokenizer, boxes="detected")
    # Regions r0 then the three detections; the hat has no detection of IoU >= 0.5.
    assert dataset.targets == [
        [False, True, False, False],
        [False, False, False, False],
        [False, True, False, False],
        [False, False, True, False],
    ]
    assert dataset.answerable == 0.75
    item = dataset[0]
    assert item["features"].shape == (4, 4) and item["features"][1, 0] == 5 * 4  # store row 5


def test_phrase_tokens_are_segment_one(root, tokenizer):
    dataset = PhraseGroundingDataset(root, "val", tokenizer, boxes="ground_truth")
    for index, sample in enumerate(dataset.samples):
        item = dataset[index]
        ids, segments = item["token_ids"], item["segment_ids"]
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        marked = [i for i, s in zip(ids, segments, strict=True) if s == PHRASE_SEGMENT]
        assert tokenizer.decode(marked) == sample.text.lower()
        assert set(segments) == {0, PHRASE_SEGMENT}


def test_truncation_counts_the_phrases_cut_off(root, tokenizer):
    # 4 word pieces: "a man in" (the cut moves back before "a red hat"), "it is a man".
    dataset = PhraseGroundingDataset(
        root, "val", tokenizer, boxes="ground_truth", max_caption_tokens=4
    )
    assert [s.text for s in dataset.samples] == ["A man", "a man"]
    assert dataset.excluded == {"not_visual": 1, "no_box": 1, "cut_off": 2}


def test_max_phrases_caps_and_missing_split(root, tokenizer):
    dataset = PhraseGroundingDataset(root, "val", tokenizer, max_phrases=3)
    assert len(dataset) == 3 and len(dataset.targets) == 3
    with pytest.raises(MissingFileError, match="no split file test.txt"):
        PhraseGroundingDataset(root, "test", tokenizer)
    with pytest.raises(ValueError, match="boxes must be"):
        PhraseGroundingDataset(root, "val", tokenizer, boxes="all")


def test_batches_mix_lengths_and_place_targets(small_scenes, tokenizer):
    dataset = PhraseGroundingDataset(small_scenes, "val", tokenizer, boxes="detected")
    indices = (0, 5, 11, 23)
    items = [dataset[i] for i in indices]
    batch = collate_phrase_grounding(items)
    assert len(set(batch.inputs.text_lengths.tolist())) > 1
    assert len({len(item["targets"]) for item in items}) > 1  # region counts differ too
    assert batch.phrase_ids.tolist() == list(indices)
    for b, item in enumerate(items):
        T, R = len(item["token_ids"]), len(item["targets"])
        assert batch.targets[b, T : T + R].tolist() == item["targets"]
        assert not batch.targets[b, :T].any() and not batch.targets[b, T + R :].any()
        assert batch.inputs.segment_ids[b, :T].tolist() == item["segment_ids"]
        assert (batch.inputs.segment_ids[b, T : T + R + 1] == 2).all()  # regions and [END]
        expected = torch.zeros_like(batch.candidates[b])
        expected[T + 1 : T + R] = True  # every region but r0
        assert torch.equal(batch.candidates[b], expected)
