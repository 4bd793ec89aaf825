import multiprocessing as mp

import h5py
import numpy as np
import pytest

from groundattn.data.errors import FormatError
from groundattn.data.store import FeatureStore, FeatureStoreWriter, Provenance, RegionFeatures
from groundattn.errors import NonFiniteError


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


def test_statistics_by_hand(tmp_path):
    # Image a: 2 regions of value 1; image b: 3 regions of value 4 → mean 2.8 over 5 regions,
    # variance (2·1.8² + 3·1.2²) / 5 = 2.16.
    with FeatureStoreWriter(tmp_path / "s.h5", 3) as writer:
        writer.add("a", _regions(2, value=1.0))
        writer.add("b", _regions(3, value=4.0))
    mean, std = FeatureStore(tmp_path / "s.h5").statistics()
    np.testing.assert_allclose(mean, [2.8] * 3)
    np.testing.assert_allclose(std, [np.sqrt(2.16)] * 3)
    # At most one image in two: every other image, from the first.
    mean, _ = FeatureStore(tmp_path / "s.h5").statistics(max_images=1)
    np.testing.assert_allclose(mean, [1.0] * 3)
