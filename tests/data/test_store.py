import multiprocessing as mp

import numpy as np
import pytest

from groundattn.data.store import FeatureStore, FeatureStoreWriter, Provenance, RegionFeatures


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
    with pytest.raises(KeyError, match="image 9"):
        FeatureStore(path)["9"]
    with pytest.raises(FileNotFoundError):
        FeatureStore(tmp_path / "missing.h5")


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
