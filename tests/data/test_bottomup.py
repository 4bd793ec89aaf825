"""Tests of groundattn/data/bottomup.py: TSV parsing and streaming into the feature store."""

import base64

import h5py
import numpy as np
import pytest

from groundattn.data import bottomup
from groundattn.data.bottomup import iter_tsv, tsv_to_store
from groundattn.data.errors import FormatError
from groundattn.data.store import FeatureStore, Provenance
from groundattn.errors import ExistingFileError

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
    for dtype in ("float32", "float16"):
        store_path = tmp_path / f"{dtype}.h5"
        assert tsv_to_store(path, store_path, feature_dtype=dtype) == 3
        store = FeatureStore(store_path)
        assert store.feature_dim == F and sorted(store.image_ids()) == ["101", "102", "103"]
        width, height, boxes, features = images[101]
        regions = store[101]
        assert (regions.width, regions.height) == (width, height)
        assert regions.provenance.tolist() == [Provenance.WHOLE_IMAGE] + [Provenance.DETECTED] * 3
        np.testing.assert_array_equal(regions.boxes[0], [0, 0, width, height])
        np.testing.assert_array_equal(regions.boxes[1:], boxes)
        assert regions.features.dtype == np.float32
        whole = features.mean(axis=0).astype(dtype).astype(np.float32)
        np.testing.assert_array_equal(regions.features[0], whole)
        np.testing.assert_array_equal(regions.features[1:], features.astype(dtype))
        with h5py.File(store_path, "r") as f:
            assert f["images/101/features"].dtype == dtype
        assert not store_path.with_name(f"{dtype}.h5.partial").exists()


def test_float16_overflow_is_a_format_error(tmp_path):
    rng = np.random.default_rng(4)
    boxes, features = _image(rng, 2)
    path = tmp_path / "big.tsv"
    path.write_text(
        _line(1, 10, 10, boxes, features) + "\n" + _line(2, 10, 10, boxes, features * 1e5) + "\n"
    )
    with pytest.raises(
        FormatError, match=r"line 2, field features: a feature of magnitude .* overflows float16"
    ):
        tsv_to_store(path, tmp_path / "s.h5")
    assert tsv_to_store(path, tmp_path / "s.h5", feature_dtype="float32") == 2


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


def _tsv_of(path, n, seed=5, end="\r\n"):
    rng = np.random.default_rng(seed)
    path.write_text(
        "".join(_line(100 + i, 10, 10, *_image(rng, 1 + i % 4)) + end for i in range(n))
    )
    return path


def _contents(store_path) -> dict:
    """Everything in a store file: its attributes, every image's datasets and attributes."""
    out = {}
    with h5py.File(store_path, "r") as f:
        out["/"] = dict(f.attrs)
        for key, group in f["images"].items():
            out[key] = {name: group[name][()].tobytes() for name in group} | dict(group.attrs)
    return out


def test_workers_give_the_store_of_one_worker(tmp_path):
    tsv = _tsv_of(tmp_path / "f.tsv", 13)
    tsv_to_store(tsv, tmp_path / "one.h5")
    tsv_to_store(tsv, tmp_path / "two.h5", workers=2, batch_lines=2)
    assert len(_contents(tmp_path / "one.h5")) == 14
    assert _contents(tmp_path / "two.h5") == _contents(tmp_path / "one.h5")


def test_a_malformed_line_in_a_worker_is_the_same_error(tmp_path):
    tsv = _tsv_of(tmp_path / "f.tsv", 6)
    lines = tsv.read_text().splitlines(keepends=True)
    lines[4] = lines[4].replace("\t10\t", "\tten\t", 1)
    tsv.write_text("".join(lines))
    with pytest.raises(FormatError, match="line 5, field image_w: expected an integer"):
        tsv_to_store(tsv, tmp_path / "s.h5", workers=2, batch_lines=1)
    assert not (tmp_path / "s.h5").exists() and not (tmp_path / "s.h5.partial").exists()


class _Killed(BaseException):
    """Stands for a kill: nothing after it runs, not even the last checkpoint."""


def _killed_after(monkeypatch, images: int) -> None:
    """The conversion dies at the first checkpoint after ``images`` images, before writing it."""
    checkpoint = bottomup._checkpoint

    def dying(writer, line, count):
        if count > images:
            raise _Killed
        checkpoint(writer, line, count)

    monkeypatch.setattr(bottomup, "_checkpoint", dying)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_conversion_resumes_to_the_uninterrupted_store(tmp_path, monkeypatch, workers):
    tsv = _tsv_of(tmp_path / "f.tsv", 11)
    tsv_to_store(tsv, tmp_path / "whole.h5")
    out = tmp_path / "s.h5"
    options = {"checkpoint_every": 3, "batch_lines": 1, "workers": workers}
    with monkeypatch.context() as patch:
        _killed_after(patch, 6)  # checkpoints at 3 and 6 images; killed after 9 were written
        with pytest.raises(_Killed):
            tsv_to_store(tsv, out, **options)
    partial = tmp_path / "s.h5.partial"
    with h5py.File(partial, "r") as f:
        assert len(f["images"]) == 9 and f.attrs["bottomup_images"] == 6
    with pytest.raises(ExistingFileError, match="s.h5.partial exists: .* --resume"):
        tsv_to_store(tsv, out)  # a rerun without --resume never replaces it
    assert tsv_to_store(tsv, out, resume=True, **options) == 11
    assert not partial.exists()
    assert _contents(out) == _contents(tmp_path / "whole.h5")


def test_an_interrupt_keeps_what_was_written(tmp_path, monkeypatch):
    tsv = _tsv_of(tmp_path / "f.tsv", 7)
    add = bottomup.FeatureStoreWriter.add

    def interrupted(self, image_id, regions, attrs=None):
        if image_id == "105":
            raise KeyboardInterrupt
        add(self, image_id, regions, attrs)

    with monkeypatch.context() as patch:
        patch.setattr(bottomup.FeatureStoreWriter, "add", interrupted)
        with pytest.raises(KeyboardInterrupt):
            tsv_to_store(tsv, tmp_path / "s.h5", checkpoint_every=100)
    with h5py.File(tmp_path / "s.h5.partial", "r") as f:  # checkpointed at the interrupt
        assert f.attrs["bottomup_images"] == 5 and f.attrs["bottomup_line"] == 5
    assert tsv_to_store(tsv, tmp_path / "s.h5", resume=True) == 7
    tsv_to_store(tsv, tmp_path / "whole.h5")
    assert _contents(tmp_path / "s.h5") == _contents(tmp_path / "whole.h5")


def test_resume_refuses_what_it_did_not_write(tmp_path, monkeypatch):
    tsv = _tsv_of(tmp_path / "f.tsv", 5)
    other = _tsv_of(tmp_path / "other.tsv", 5, seed=6)
    out = tmp_path / "s.h5"
    with monkeypatch.context() as patch:
        _killed_after(patch, 2)
        with pytest.raises(_Killed):
            tsv_to_store(tsv, out, checkpoint_every=2, batch_lines=1)
    partial = tmp_path / "s.h5.partial"
    before = partial.read_bytes()
    with pytest.raises(FormatError, match="s.h5.partial: cannot be resumed: not converted from"):
        tsv_to_store(other, out, resume=True)
    assert partial.read_bytes() == before
    # A complete store: kept as it is with --resume, an error without.
    assert tsv_to_store(tsv, out, resume=True) == 5
    stored = out.read_bytes()
    assert tsv_to_store(tsv, out, resume=True) == 5
    with pytest.raises(ExistingFileError, match="s.h5 exists; choose another --out"):
        tsv_to_store(tsv, out)
    with pytest.raises(ExistingFileError, match="s.h5 exists and is not converted from"):
        tsv_to_store(other, out, resume=True)
    assert out.read_bytes() == stored
    mine = tmp_path / "mine.h5"
    mine.write_text("a user's file")
    with pytest.raises(ExistingFileError, match="not written by groundattn prepare bottomup"):
        tsv_to_store(tsv, mine, resume=True)
    assert mine.read_text() == "a user's file"
    # --resume with nothing to resume starts the conversion.
    assert tsv_to_store(tsv, tmp_path / "new.h5", resume=True) == 5


def test_a_cut_off_last_line_names_file_line_and_what_is_missing(tmp_path):
    tsv = _tsv_of(tmp_path / "f.tsv", 3, end="\n")
    text = tsv.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    cut_in_features = text[: len(text) - 1 - 42]  # line 3: 3 boxes, 4 × 3 × 8 / 3 = 128 chars
    tsv.write_text(cut_in_features)
    with pytest.raises(FormatError) as info:
        tsv_to_store(tsv, tmp_path / "s.h5")
    message = str(info.value)
    assert message.startswith(f"{tsv}, line 3, field features: the file ends inside this line")
    assert "after 86 of the 128 base64 characters of num_boxes = 3 × F = 8" in message, message
    assert not (tmp_path / "s.h5").exists() and not (tmp_path / "s.h5.partial").exists()
    tsv.write_text(text[: len(text) - len(last) + 8])  # cut in the fields before
    with pytest.raises(FormatError, match="line 3: the file ends inside .* expected 6 tab-sep"):
        tsv_to_store(tsv, tmp_path / "s.h5")
    tsv.write_text(text.rstrip("\n"))  # a complete last line without its line end is fine
    assert tsv_to_store(tsv, tmp_path / "s.h5") == 3
