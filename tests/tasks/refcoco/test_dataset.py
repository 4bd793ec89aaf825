import json

import numpy as np
import pytest
import torch

from groundattn.data.boxes import box_iou
from groundattn.data.refcoco import load_instances, load_refs
from groundattn.tasks.refcoco import RefCOCODataset, collate_refcoco, index_stores


@pytest.fixture(scope="module")
def refer(small_scenes):
    refcoco = small_scenes / "refcoco+"
    return (
        load_refs(refcoco / "refs(unc).p"),
        load_instances(refcoco / "instances.json"),
        index_stores(small_scenes / "features"),
    )


def _split(refer, split, tokenizer, **kwargs):
    refs, instances, stores = refer
    return RefCOCODataset(
        [r for r in refs if r.split == split], instances, stores, tokenizer, **kwargs
    )


def test_images_of_every_refs_split_are_found(small_scenes, refer):
    refs, _, stores = refer
    assert {str(r.image_id) for r in refs} <= set(stores)
    test_ids = set((small_scenes / "test.txt").read_text().split())
    for r in refs:
        if r.split in ("testA", "testB"):  # refer's test splits come from the image split "test"
            assert str(r.image_id) in test_ids and stores[str(r.image_id)].path.name == "test.h5"


def test_ground_truth_targets_are_the_referent(small_scenes, refer, tokenizer):
    dataset = _split(refer, "val", tokenizer, boxes="ground_truth")
    refs = [r for r in refer[0] if r.split == "val"]
    ann_of_sentence = {s.sent_id: r.ann_id for r in refs for s in r.sentences}
    maps = json.loads((small_scenes / "features" / "val_boxes.json").read_text())
    for index, (image_id, sent_id) in enumerate(
        zip(dataset.image_ids, dataset.sent_ids, strict=True)
    ):
        rows = dataset.images[image_id][0]
        referent_row = next(
            m["row"]
            for m in maps[image_id]["ground_truth"]
            if m["ann_id"] == ann_of_sentence[sent_id]
        )
        targets = np.array(dataset.targets[index])
        assert targets[rows.tolist().index(referent_row)] and not targets[0]
    assert dataset.answerable == 1.0


def test_detected_targets_are_iou_at_least_one_half(refer, tokenizer):
    refs, instances, _ = refer
    dataset = _split(refer, "train", tokenizer, boxes="detected")
    sentences = [(r, s) for r in refs if r.split == "train" for s in r.sentences]
    for (ref, _), image_id, targets in zip(
        sentences, dataset.image_ids, dataset.targets, strict=True
    ):
        boxes = dataset.images[image_id][2]
        iou = box_iou(boxes, np.array([instances.annotations[ref.ann_id].box_xyxy], np.float32))[
            :, 0
        ]
        assert targets == [False] + (iou[1:] >= 0.5).tolist()
    assert 0.5 < dataset.answerable < 1.0  # the simulated detector misses some referents


def test_collate_puts_targets_at_region_positions(refer, tokenizer):
    dataset = _split(refer, "val", tokenizer, boxes="detected")
    items = [dataset[i] for i in (0, 4, 9)]
    batch = collate_refcoco(items)
    assert len(set(batch.inputs.text_lengths.tolist())) > 1
    for b, item in enumerate(items):
        T, R = len(item["token_ids"]), len(item["targets"])
        assert (
            batch.targets[b, T : T + R].tolist() == item["targets"]
            and not batch.targets[b, :T].any()
        )
        expected = torch.zeros_like(batch.candidates[b])
        expected[T + 1 : T + R] = True  # every region but r0
        assert torch.equal(batch.candidates[b], expected)
