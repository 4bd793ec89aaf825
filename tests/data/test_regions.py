import numpy as np

from groundattn.data.regions import ground_chains, select_regions
from groundattn.data.store import Provenance, RegionFeatures


def _regions():
    boxes = np.array(
        [[0, 0, 100, 50], [10, 10, 30, 30], [50, 10, 90, 40], [11, 11, 31, 29], [60, 0, 100, 20]],
        np.float32,
    )
    prov = np.array(
        [
            Provenance.WHOLE_IMAGE,
            Provenance.GROUND_TRUTH,
            Provenance.GROUND_TRUTH,
            Provenance.DETECTED,
            Provenance.DETECTED,
        ],
        np.uint8,
    )
    return RegionFeatures(
        boxes=boxes,
        features=np.arange(10, dtype=np.float32).reshape(5, 2),
        provenance=prov,
        width=100,
        height=50,
    )


def test_selection_keeps_r0_first_and_normalises():
    gt = select_regions(_regions(), "ground_truth")
    assert gt.store_rows.tolist() == [0, 1, 2]
    np.testing.assert_allclose(gt.normalized_boxes[1], [0.1, 0.2, 0.3, 0.6])
    det = select_regions(_regions(), "detected", max_regions=2)
    assert det.store_rows.tolist() == [0, 3]


def test_each_box_names_its_best_region_above_the_threshold():
    chains = {
        "a": [(10, 10, 30, 30)],
        "b": [(50, 10, 90, 40), (10, 10, 30, 30)],
        "far": [(0, 45, 5, 50)],
    }
    gt = ground_chains(chains, select_regions(_regions(), "ground_truth"))
    assert gt == {"a": [1], "b": [1, 2]}  # never r0; "far" overlaps nothing
    det = ground_chains(chains, select_regions(_regions(), "detected"))
    # (11, 11, 31, 29) covers box a with IoU 342/418 ≈ 0.82; b's first box has IoU ≤ 0.5 with every detection.
    assert det == {"a": [1], "b": [1]}
