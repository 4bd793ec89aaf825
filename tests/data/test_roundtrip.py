"""Generate the embedded data, read it back with the readers of the real formats."""

import numpy as np
import pytest

from groundattn.data.flickr30k import Flickr30kEntities
from groundattn.data.refcoco import load_detections, load_instances, load_refs
from groundattn.data.store import FeatureStore, Provenance
from groundattn.data.vgp import match_pairs, read_vgp_csv
from groundattn.data.vqa import load_vqa
from groundattn.model import load_tokenizer
from groundattn.tasks.vgp import VGPDataset


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_every_grounded_token_points_at_the_box_its_phrase_names(small_scenes, tokenizer):
    entities = Flickr30kEntities(small_scenes)
    dataset = VGPDataset(small_scenes, "train", tokenizer, max_caption_tokens=64)
    store = FeatureStore(small_scenes / "features" / "train.h5")
    checked = 0
    for index in range(0, len(dataset), 7):
        image = dataset.image_ids[index // 10]
        sample = dataset[index]
        annotation = entities.annotation(image)
        boxes = store[image].boxes[dataset.rows[index // 10]]  # (R, 4) pixels, r0 first
        text = tokenizer.convert_ids_to_tokens(sample["token_ids"])
        for (start, end), slots in zip(sample["spans"], sample["slots"], strict=True):
            if not slots:
                continue
            phrase_words = " ".join(text[start:end]).replace(" ##", "")
            # The chain whose boxes are exactly these regions names this phrase.
            named = [
                c
                for c, bs in annotation.boxes.items()
                if sorted(map(tuple, np.round(bs, 3)))
                == sorted(map(tuple, np.round(boxes[slots], 3)))
            ]
            assert named, f"image {image}: phrase {phrase_words!r} grounded to boxes of no chain"
            pairs = {(t, s) for t in range(start, end) for s in slots}
            assert pairs <= set(sample["grounding"])
            checked += 1
    assert checked > 20


def test_all_files_read_back(small_scenes):
    entities = Flickr30kEntities(small_scenes)
    train = entities.splits["train"]
    captions = {i: entities.captions(i) for i in train}
    matched = match_pairs(read_vgp_csv(small_scenes / "vgp" / "train.csv"), captions)
    assert not matched.unmatched and matched.pairs
    examples = load_vqa(
        small_scenes / "vqa" / "v2_OpenEnded_train_questions.json",
        small_scenes / "vqa" / "v2_train_annotations.json",
    )
    assert examples and all(len(e.annotation.answers) == 10 for e in examples)
    refs = load_refs(small_scenes / "refcoco+" / "refs(unc).p")
    assert {r.split for r in refs} == {"train", "val", "testA", "testB"}
    instances = load_instances(small_scenes / "refcoco+" / "instances.json")
    detections = load_detections(small_scenes / "refcoco+" / "detections.json")
    assert instances.annotations and detections
    with FeatureStore(small_scenes / "features" / "train.h5") as store:
        for image in train[:5]:
            regions = store[image]
            assert regions.provenance[0] == Provenance.WHOLE_IMAGE
            n_objects = sum(len(b) for b in entities.annotation(image).boxes.values())
            assert (regions.provenance == Provenance.GROUND_TRUTH).sum() <= n_objects
