import multiprocessing as mp

import h5py
import numpy as np
import pytest

from groundattn.data.errors import FormatError
from groundattn.data.store import (
    FeatureStore,
    FeatureStoreWriter,
    Provenance,
    RegionFeatures,
    to_float16,
    to_float32,
)
from groundattn.errors import ExistingFileError, NonFiniteError


def _regions(k: int, f: int = 3, value: float = 1.0) -> RegionFeatures:
    return RegionFeatures(
        boxes=np.tile(np.array([[0, 0, 4, 4]], np.float32), (k, 1)),
        features=np.full((k, f), value, np.float32),
        provenance=np.array(
            [Provenance.WHOLE_IMAGE] + [Provenance.GROUND_TRUTH] * (k - 1), np.uint8
        ),
        width=4,
        height=4,
    )


def _read(args):
    store, image_id = args
    return float(store[image_id].features.sum())


def test_round_trip_and_workers(tmp_path):
    path = tmp_path / "train.h5"
    with FeatureStoreWriter(path, feature_dim=3) as w:
        w.add("1", _regions(2, value=1.0))
        w.add(2, _regions(3, value=2.0))
    store = FeatureStore(path)
    assert sorted(store.image_ids()) == ["1", "2"] and len(store) == 2 and 2 in store
    r = store["2"]
    assert r.features.shape == (3, 3) and r.provenance[0] == Provenance.WHOLE_IMAGE and r.width == 4
    # Several processes read the same store through their own handles.
    with mp.get_context("fork").Pool(2) as pool:
        assert pool.map(_read, [(store, "1"), (store, "2")]) == [6.0, 18.0]
    store.close()


def test_errors_and_atomicity(tmp_path):
    path = tmp_path / "s.h5"
    with (
        pytest.raises(ValueError, match="features must be"),
        FeatureStoreWriter(path, feature_dim=4) as w,
    ):
        w.add("1", _regions(2))
    assert not path.exists() and not (tmp_path / "s.h5.partial").exists()
    with FeatureStoreWriter(path, feature_dim=3) as w:
        w.add("1", _regions(1))
        with pytest.raises(ValueError, match="already"):
            w.add("1", _regions(1))
        with pytest.raises(ValueError, match="HDF5 group"):
            w.add("a/b", _regions(1))
    with pytest.raises(FormatError, match="s.h5: image 9 is not in this feature store"):
        FeatureStore(path)["9"]
    with pytest.raises(FileNotFoundError):
        FeatureStore(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not HDF5")
    with pytest.raises(FormatError, match="text.h5: not an HDF5 file"):
        FeatureStore(tmp_path / "text.h5")


def test_non_finite_values_are_refused_when_written_and_when_read(tmp_path):
    bad = _regions(3)
    bad.features[2, 1] = np.inf
    with (
        pytest.raises(NonFiniteError, match="image 1: features row 2 holds inf or nan"),
        FeatureStoreWriter(tmp_path / "w.h5", feature_dim=3) as w,
    ):
        w.add("1", bad)
    path = tmp_path / "r.h5"
    with FeatureStoreWriter(path, feature_dim=3) as w:
        w.add("1", _regions(3))
    with h5py.File(path, "r+") as f:  # damaged after it was written
        f["images/1/features"][0, 0] = np.nan
        f["images/1/boxes"][1, 2] = np.nan
    store = FeatureStore(path)
    with pytest.raises(NonFiniteError, match="r.h5: image 1: features row 0"):
        store.features("1", np.array([2, 0]))
    assert store.features("1", np.array([1, 2])).shape == (2, 3)  # the finite rows still read
    with pytest.raises(NonFiniteError, match="image 1: boxes row 1"):
        store.layout("1")
    with pytest.raises(NonFiniteError, match="features row 0"):
        store.statistics()


def test_statistics_cover_every_region_of_evenly_chosen_images(tmp_path):
    with FeatureStoreWriter(tmp_path / "s.h5", 3) as writer:
        writer.add("a", _regions(2, value=1.0))
        writer.add("b", _regions(3, value=4.0))
    stats = FeatureStore(tmp_path / "s.h5").statistics()
    assert stats.feature_mean.dtype == stats.feature_std.dtype == stats.boxes.dtype == np.float64
    # By hand: mean (2 · 1 + 3 · 4) / 5 = 2.8; variance (2 · 1.8² + 3 · 1.2²) / 5 = 2.16.
    np.testing.assert_allclose(stats.feature_mean, [2.8] * 3, rtol=1e-15)
    np.testing.assert_allclose(stats.feature_std, [2.16**0.5] * 3, rtol=1e-15)
    np.testing.assert_array_equal(stats.boxes, [[0, 0, 1, 1]] * 5)  # normalised by the image's size
    # At most one image in two: every other image, from the first.
    stats = FeatureStore(tmp_path / "s.h5").statistics(max_images=1)
    np.testing.assert_array_equal(stats.feature_mean, [1.0] * 3)
    np.testing.assert_array_equal(stats.feature_std, [0.0] * 3)
    assert stats.boxes.shape == (2, 4)


def test_float16_conversions_are_numpys_bit_for_bit():
    rng = np.random.default_rng(0)
    scales = (1e-8, 1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4)  # subnormal to near the float16 limit
    values = np.concatenate([rng.standard_normal(20_000) * s for s in scales])
    values = np.concatenate([values, [0.0, -0.0, 65504, 65519, -65519, 2.98e-8, 6e-8, 1.0]])
    values = values.astype(np.float32).reshape(-1, 8)  # (N, 8): more than one chunk
    np.testing.assert_array_equal(
        to_float16(values).view(np.uint16), values.astype(np.float16).view(np.uint16)
    )
    every = np.arange(2**16, dtype=np.uint16).view(np.float16)  # every float16, nan and inf too
    converted = to_float32(every)
    assert converted.dtype == np.float32
    np.testing.assert_array_equal(converted, every.astype(np.float32))


def test_float16_store_reads_float32_and_refuses_overflow(tmp_path):
    path = tmp_path / "half.h5"
    regions = _regions(3, value=0.1)
    with FeatureStoreWriter(path, feature_dim=3, feature_dtype="float16") as w:
        w.add("1", regions)
    with h5py.File(path, "r") as f:
        assert f["images/1/features"].dtype == np.float16
        assert f.attrs["feature_dtype"] == "float16"
    store = FeatureStore(path)
    expected = regions.features.astype(np.float16).astype(np.float32)
    for read in (store["1"].features, store.features("1", np.array([2, 0, 1]))):
        assert read.dtype == np.float32
        np.testing.assert_array_equal(read, expected)
    with (
        pytest.raises(ValueError, match="overflows float16"),
        FeatureStoreWriter(tmp_path / "big.h5", feature_dim=3, feature_dtype="float16") as w,
    ):
        w.add("1", _regions(2, value=7e4))
    assert not (tmp_path / "big.h5.partial").exists()


def test_writer_never_replaces_an_existing_partial(tmp_path):
    partial = tmp_path / "s.h5.partial"
    partial.write_text("a user's file")
    with pytest.raises(ExistingFileError, match="s.h5.partial exists"):
        FeatureStoreWriter(tmp_path / "s.h5", feature_dim=3)
    with pytest.raises(FormatError, match="cannot be opened to resume"):
        FeatureStoreWriter(tmp_path / "s.h5", feature_dim=3, resume=True)
    assert partial.read_text() == "a user's file"
