"""Tests of groundattn/data/bottomup.py: TSV parsing and streaming into the feature store."""

import base64

import numpy as np
import pytest

from groundattn.data.bottomup import iter_tsv, tsv_to_store
from groundattn.data.errors import FormatError
from groundattn.data.store import FeatureStore, Provenance

F = 8


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.float32).tobytes()).decode()


def _line(image_id, width, height, boxes, features, num_boxes=None) -> str:
    num_boxes = len(boxes) if num_boxes is None else num_boxes
    return "\t".join(
        [str(image_id), str(width), str(height), str(num_boxes), _b64(boxes), _b64(features)]
    )


def _image(rng, k, feature_dim=F):
    xy = rng.uniform(0, 5, size=(k, 2))  # boxes of any image of 10 x 10 pixels or more
    boxes = np.concatenate([xy, xy + rng.uniform(1, 5, size=(k, 2))], axis=1).astype(np.float32)
    return boxes, rng.standard_normal((k, feature_dim)).astype(np.float32)


@pytest.fixture
def tsv(tmp_path):
    """A TSV of 3 images written as the bottom-up-attention tools do (CRLF line ends)."""
    rng = np.random.default_rng(0)
    images = {
        101: (640, 480, *_image(rng, 3)),
        102: (320, 240, *_image(rng, 1)),
        103: (50, 60, *_image(rng, 5)),
    }
    path = tmp_path / "features.tsv"
    path.write_text("".join(_line(i, w, h, b, f) + "\r\n" for i, (w, h, b, f) in images.items()))
    return path, images


def test_iter_tsv(tsv):
    path, images = tsv
    items = list(iter_tsv(path))
    assert [item.image_id for item in items] == ["101", "102", "103"]
    for item, (width, height, boxes, features) in zip(items, images.values(), strict=True):
        assert (item.width, item.height) == (width, height)
        assert item.boxes.dtype == np.float32 and item.features.shape == features.shape
        np.testing.assert_array_equal(item.boxes, boxes)
        np.testing.assert_array_equal(item.features, features)
    assert [item.line for item in items] == [1, 2, 3]


def test_iter_tsv_other_field_layout(tmp_path):
    rng = np.random.default_rng(1)
    boxes, features = _image(rng, 2)
    fields = ["img_id", "img_h", "img_w", "objects_id", "num_boxes", "boxes", "features"]
    path = tmp_path / "lxmert.tsv"
    path.write_text(
        "\t".join(["COCO_1", "480", "640", "AAAA", "2", _b64(boxes), _b64(features)]) + "\n"
    )
    names = ["image_id", "image_h", "image_w", "objects_id", "num_boxes", "boxes", "features"]
    (item,) = iter_tsv(path, fieldnames=names)
    assert (item.image_id, item.width, item.height) == ("COCO_1", 640, 480)
    with pytest.raises(ValueError, match="lack"):
        next(iter_tsv(path, fieldnames=fields))


def test_tsv_to_store_adds_whole_image_box_first(tsv, tmp_path):
    path, images = tsv
    store_path = tmp_path / "store.h5"
    assert tsv_to_store(path, store_path) == 3
    store = FeatureStore(store_path)
    assert store.feature_dim == F and sorted(store.image_ids()) == ["101", "102", "103"]
    width, height, boxes, features = images[101]
    regions = store[101]
    assert (regions.width, regions.height) == (width, height)
    assert regions.provenance.tolist() == [Provenance.WHOLE_IMAGE] + [Provenance.DETECTED] * 3
    np.testing.assert_array_equal(regions.boxes[0], [0, 0, width, height])
    np.testing.assert_allclose(regions.features[0], features.mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(regions.boxes[1:], boxes)
    np.testing.assert_array_equal(regions.features[1:], features)
    assert not store_path.with_name("store.h5.partial").exists()


def test_iter_tsv_is_lazy(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "f.tsv"
    path.write_text(_line(1, 10, 10, *_image(rng, 2)) + "\n" + "garbage\n")
    items = iter_tsv(path)
    assert next(items).image_id == "1"  # the bad second line is not read yet
    with pytest.raises(FormatError, match="line 2: expected 6 tab-separated fields"):
        next(items)


def _bad_lines(rng):
    boxes, features = _image(rng, 2)
    good = _line(1, 10, 10, boxes, features)
    other_f = _image(rng, 2, feature_dim=F + 1)[1]
    b64_boxes = _b64(boxes)
    return [
        (
            _line(2, 10, 10, boxes, features).replace(b64_boxes, b64_boxes[:-4] + "!!!!"),
            "boxes",
            "invalid base64",
        ),
        (
            _line(2, 10, 10, boxes[:1], features, num_boxes=2),
            "boxes",
            "expected num_boxes × 4 × 4 = 32 bytes",
        ),
        (
            "\t".join(
                [
                    "2",
                    "10",
                    "10",
                    "2",
                    base64.b64encode(boxes.astype(np.float64).tobytes()).decode(),
                    _b64(features),
                ]
            ),
            "boxes",
            "(float64 boxes?)",
        ),
        (_line(2, 10, 10, boxes, other_f), "features", "F = 8 (from the first line)"),
        (_line(2, 10, 10, boxes[:, [2, 1, 0, 3]], features), "boxes", "has x2 <= x1"),
        (_line(2, 10, 10, boxes * 3, features), "boxes", "lies outside the 10 × 10 image"),
        (_line(2, 10, 10, boxes, features[:, :5]), "features", "F = 8"),
        (_line(2, 10, 10, boxes, features, num_boxes=0), "num_boxes", "positive integer"),
        (_line(2, "ten", 10, boxes, features), "image_w", "expected an integer, got b'ten'"),
        (_line("", 10, 10, boxes, features), "image_id", "non-empty"),
        (_line(2, 10, 10, np.full((2, 4), np.nan), features), "boxes", "NaN"),
        (good, "image_id", "image 1 already on line 1"),
    ], good


def test_malformed_lines_name_file_line_and_field(tmp_path):
    bad_lines, good = _bad_lines(np.random.default_rng(3))
    for bad, field, message in bad_lines:
        path = tmp_path / "f.tsv"
        path.write_text(good + "\n" + bad + "\n")
        store_path = tmp_path / "store.h5"
        with pytest.raises(FormatError) as info:
            tsv_to_store(path, store_path)
        assert str(info.value).startswith(f"{path}, line 2, field {field}: "), str(info.value)
        assert message in str(info.value)
        # The store is written atomically: nothing is left behind.
        assert not store_path.exists() and not store_path.with_name("store.h5.partial").exists()


def test_empty_tsv(tmp_path):
    path = tmp_path / "empty.tsv"
    path.write_text("\n")
    with pytest.raises(FormatError, match="no image"):
        tsv_to_store(path, tmp_path / "store.h5")
