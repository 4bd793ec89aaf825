import json

import numpy as np
import pytest
import torch

from groundattn.data.refcoco import load_instances
from groundattn.data.store import FeatureStore
from groundattn.tasks.pretrain import (
    CaptionDataset,
    RegionClasses,
    collate_pretrain,
    mask_regions,
    mask_tokens,
)

IGNORE = -100


@pytest.fixture(scope="module")
def classes(small_scenes):
    return RegionClasses.load(
        small_scenes / "refcoco+" / "instances.json", small_scenes / "refcoco+" / "detections.json"
    )


@pytest.fixture(scope="module")
def captions(small_scenes, tokenizer, classes):
    return CaptionDataset(
        small_scenes, "train", tokenizer, regions="all", region_classes=classes, seed=3
    )


def test_mask_tokens_follows_bert_rates():
    ids = np.arange(1000, 41000)
    random_ids = np.arange(2000, 3000)
    inputs, labels = mask_tokens(
        ids, np.random.default_rng(0), probability=0.15, mask_id=103, random_ids=random_ids
    )
    chosen = labels != IGNORE
    assert abs(chosen.mean() - 0.15) < 0.01
    np.testing.assert_array_equal(
        labels[chosen], ids[chosen]
    )  # the original word pieces are predicted
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])  # the others are untouched
    masked, kept = inputs[chosen] == 103, inputs[chosen] == ids[chosen]
    replaced = ~masked & ~kept
    assert (
        abs(masked.mean() - 0.8) < 0.02
        and abs(kept.mean() - 0.1) < 0.015
        and abs(replaced.mean() - 0.1) < 0.015
    )
    assert np.isin(inputs[chosen][replaced], random_ids).all()


def test_mask_regions_never_r0_and_only_known_classes():
    classes = np.array([IGNORE, 2, IGNORE, 0, 5] * 2000)
    classes[0] = 1  # even a class at slot 0 never makes r0 a candidate
    chosen = mask_regions(classes, np.random.default_rng(0), probability=0.15)
    assert not chosen[0] and not chosen[classes < 0].any()
    assert abs(chosen[1:][classes[1:] >= 0].mean() - 0.15) < 0.015


def test_items_keep_specials_r0_and_unlabelled_regions(captions, tokenizer):
    store = FeatureStore(captions.store.path)
    tokens = zeroed = regions = 0
    for index in range(len(captions)):
        item = captions[index]
        image = captions.samples[index][0]
        ids, labels = item["token_ids"], np.array(item["mlm_labels"])
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        assert labels[0] == labels[-1] == IGNORE and len(labels) == len(ids)
        region_labels = np.array(item["mrc_labels"])
        original = torch.from_numpy(store.features(captions.image_ids[image], captions.rows[image]))
        is_zero = (item["features"] == 0).all(-1).numpy()
        np.testing.assert_array_equal(
            is_zero, region_labels >= 0
        )  # zeroed exactly where classified
        assert region_labels[0] == IGNORE and torch.equal(item["features"][0], original[0])
        np.testing.assert_array_equal(
            region_labels[region_labels >= 0], captions.classes[image][region_labels >= 0]
        )
        tokens += (labels >= 0).sum() / (len(labels) - 2)
        zeroed += is_zero.sum()
        regions += (captions.classes[image][1:] >= 0).sum()
    assert 0.1 < tokens / len(captions) < 0.2 and 0.1 < zeroed / regions < 0.2


def test_items_depend_on_seed_epoch_and_index_only(small_scenes, tokenizer, captions, classes):
    again = CaptionDataset(
        small_scenes, "train", tokenizer, regions="all", region_classes=classes, seed=3
    )
    assert (
        captions[7]["token_ids"] == again[7]["token_ids"]
        and captions[7]["mrc_labels"] == again[7]["mrc_labels"]
    )
    again.set_epoch(1)
    assert any(captions[i]["token_ids"] != again[i]["token_ids"] for i in range(20))


def test_region_classes_follow_the_box_maps(small_scenes, tokenizer, classes):
    """Ground-truth rows take their object's category, detected rows the detector's."""
    maps = json.loads((small_scenes / "features" / "val_boxes.json").read_text())
    instances = load_instances(small_scenes / "refcoco+" / "instances.json")
    index = {c: k for k, c in enumerate(sorted(instances.categories))}
    dataset = CaptionDataset(small_scenes, "val", tokenizer, regions="all", region_classes=classes)
    for image_id, rows, labels in zip(
        dataset.image_ids, dataset.rows, dataset.classes, strict=True
    ):
        expected = {0: IGNORE}
        expected.update(
            {
                m["row"]: index[instances.annotations[m["ann_id"]].category_id]
                for m in maps[image_id]["ground_truth"]
            }
        )
        expected.update({m["row"]: index[m["category_id"]] for m in maps[image_id]["detected"]})
        assert labels.tolist() == [expected[int(r)] for r in rows]


def test_without_classes_nothing_is_zeroed(small_scenes, tokenizer):
    dataset = CaptionDataset(small_scenes, "val", tokenizer, region_classes=None)
    for index in range(len(dataset)):
        item = dataset[index]
        assert set(item["mrc_labels"]) == {IGNORE} and not (item["features"] == 0).all(-1).any()
    assert dataset.labelled_regions == 0


def test_collate_places_labels_at_each_samples_positions(captions):
    items = [captions[i] for i in (0, 9, 33)]
    batch = collate_pretrain(items)
    inputs = batch.inputs
    assert len(batch) == 3 and len(set(inputs.text_lengths.tolist())) > 1
    for b, item in enumerate(items):
        T, R = len(item["token_ids"]), len(item["mrc_labels"])
        assert inputs.input_ids[b, :T].tolist() == item["token_ids"]
        assert batch.mlm_labels[b, :T].tolist() == item["mlm_labels"]
        assert batch.mrc_labels[b, T : T + R].tolist() == item["mrc_labels"]
        assert (batch.mlm_labels[b, T:] == IGNORE).all() and (
            batch.mrc_labels[b, :T] == IGNORE
        ).all()
        assert (batch.mrc_labels[b, T + R :] == IGNORE).all()
