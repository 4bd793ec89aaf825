import shutil

import numpy as np
import pytest

from groundattn.data.errors import FormatError
from groundattn.data.store import FeatureStore, FeatureStoreWriter, Provenance, RegionFeatures
from groundattn.data.vgp import CONFLICTING_ROWS, HTML_ROWS, OUTSIDE_ROWS, swap_label
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


def _copy(small_scenes, tmp_path, *names):
    root = tmp_path / "root"
    root.mkdir()
    for name in ("Sentences", "Annotations", "vgp", "features", "train.txt", "val.txt", *names):
        (shutil.copytree if (small_scenes / name).is_dir() else shutil.copy)(
            small_scenes / name, root / name
        )
    return root


def test_left_out_rows_and_phrases_are_counted(small_scenes, tmp_path):
    root = _copy(small_scenes, tmp_path)
    image = (root / "val.txt").read_text().split()[0]
    other = (root / "train.txt").read_text().split()[0]
    csv = root / "vgp" / "val.csv"
    first = csv.read_text().splitlines()[1].split(",")
    relabel = [*first[:-1], str((int(first[-1]) + 1) % 5)]
    extra = [
        f'{image},"a guy</font> give a kiss to <font color=""red"">a guy",a guy,a,b,3',
        f"{other},a thing,the thing,a,b,3",
        ",".join(relabel),
    ]
    csv.write_text(csv.read_text() + "\n".join(extra) + "\n")
    dataset = VGPDataset(root, "val", load_tokenizer(), max_caption_tokens=12)
    assert dataset.dropped[HTML_ROWS] == 1 and dataset.dropped[OUTSIDE_ROWS] == 1
    assert dataset.dropped[CONFLICTING_ROWS] == 1
    assert dataset.dropped["phrases cut off whole by truncation to 12 word pieces"] > 0


def test_a_sentences_file_without_five_captions_is_a_format_error(small_scenes, tmp_path):
    root = _copy(small_scenes, tmp_path)
    image = (root / "val.txt").read_text().split()[0]
    path = root / "Sentences" / f"{image}.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:4]) + "\n")
    with pytest.raises(FormatError, match=f"{image}.txt: expected 5 captions .*found 4"):
        VGPDataset(root, "val", load_tokenizer())


def test_detected_boxes_ground_phrases_by_iou(small_scenes, tmp_path):
    """A bottom-up store (r0 + detections): phrases ground to the detections that cover a box."""
    root = _copy(small_scenes, tmp_path)
    source = FeatureStore(small_scenes / "features" / "val.h5")
    images = (root / "val.txt").read_text().split()
    (root / "features" / "val.h5").unlink()
    with FeatureStoreWriter(root / "features" / "val.h5", source.feature_dim) as writer:
        for image in images:
            r = source[image]
            keep = np.isin(r.provenance, [Provenance.WHOLE_IMAGE, Provenance.DETECTED])
            writer.add(
                image,
                RegionFeatures(
                    r.boxes[keep], r.features[keep], r.provenance[keep], r.width, r.height
                ),
            )
    with pytest.raises(FormatError, match="only the whole image r0 .*set data.regions=detected"):
        VGPDataset(root, "val", load_tokenizer())
    dataset = VGPDataset(root, "val", load_tokenizer(), regions="detected")
    grounded = [slots for caps in dataset.captions for c in caps for _, slots in c.phrases]
    assert sum(map(bool, grounded)) > 0.5 * len(grounded)
    strict = VGPDataset(root, "val", load_tokenizer(), regions="detected", iou_threshold=0.95)
    lost = [k for k in strict.dropped if k.startswith("visual phrases with no region")]
    assert lost and strict.dropped[lost[0]] > dataset.dropped.get(lost[0], 0)
