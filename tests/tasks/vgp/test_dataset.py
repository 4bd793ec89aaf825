import pytest

from groundattn.data.vgp import swap_label
from groundattn.model import load_tokenizer
from groundattn.tasks.vgp import VGPDataset, collate_vgp
from groundattn.tasks.vgp.dataset import CAPTION_PAIRS


@pytest.fixture(scope="module")
def dataset(small_scenes):
    return VGPDataset(small_scenes, "train", load_tokenizer(), max_caption_tokens=40)


def test_items_depend_on_seed_epoch_and_index_only(dataset):
    dataset.set_epoch(3)
    a = [dataset[i] for i in (0, 7, 13)]
    dataset.set_epoch(0)
    dataset.set_epoch(3)
    b = [dataset[i] for i in (0, 7, 13)]
    assert [x["token_ids"] for x in a] == [x["token_ids"] for x in b]
    dataset.set_epoch(4)
    c = [dataset[i] for i in range(40)]
    dataset.set_epoch(3)
    assert [x["label"] for x in c] != [dataset[i]["label"] for i in range(40)]


def test_labels_negatives_and_swapped_pairs(dataset):
    labels, swapped_seen = [], False
    for epoch in range(4):
        dataset.set_epoch(epoch)
        for index in range(0, len(dataset), 3):
            item = dataset[index]
            labels.append(item["label"])
            n1 = item["segment_ids"].count(0) - 2  # c1's word pieces
            if item["label"] == 1:  # c2 is another image's: its phrases are grounded to nothing
                assert all(
                    not slots
                    for (s, _), slots in zip(item["spans"], item["slots"], strict=True)
                    if s > n1 + 1
                )
            if item["label"] == 0 and item["pairs"]:
                image, pair = divmod(index, len(CAPTION_PAIRS))
                i, j = CAPTION_PAIRS[pair]
                stored = dataset.pairs[image][i, j]
                # Compare the pairs with the stored order: equal, or swapped with classes 1 <-> 2.
                direct = [(a, b + len(dataset.captions[image][i].phrases), c) for a, b, c in stored]
                if item["pairs"] != direct:
                    swapped = [
                        (b, a + len(dataset.captions[image][j].phrases), int(swap_label(c)))
                        for a, b, c in stored
                    ]
                    assert item["pairs"] == swapped
                    swapped_seen = True
    assert set(labels) == {0, 1, 2}
    assert 0.35 < labels.count(0) / len(labels) < 0.65
    assert swapped_seen


def test_collate_marks_grounding_and_phrases(dataset):
    batch = collate_vgp([dataset[i] for i in range(8)])
    B, N = batch.inputs.input_ids.shape
    assert batch.grounding.shape == (B, N, N) and batch.phrase_mask.shape[0] == B
    rows = batch.grounding.any(-1)
    assert not (rows & ~batch.inputs.text_mask).any()  # only text tokens are grounded
    cols = batch.grounding.any(-2)
    assert not (cols & ~batch.inputs.region_mask).any()  # only to regions
    r0 = batch.inputs.region_positions()[:, 0]
    assert not batch.grounding[range(B), :, r0].any()  # never to the whole image


def test_hard_negatives_are_the_nearest_other_image(dataset):
    assert len(dataset.nearest) == len(dataset.image_ids)
    assert all(int(n) != i for i, n in enumerate(dataset.nearest))
