import numpy as np
import pytest
import torch

from groundattn.train.checkpoint_io import CheckpointError, write_file
from groundattn.train.state_codec import encode_tree, load_tree


def _round_trip(tmp_path, obj):
    for name, content in encode_tree("s", obj).items():
        write_file(tmp_path / name, content)
    return load_tree(tmp_path, "s")


def test_round_trip_of_what_json_lacks(tmp_path):
    obj = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.arange(4.0)}, 7: {}},
        "betas": (0.9, 0.999),
        "rng": np.arange(5, dtype=np.uint32),
        "tricky": {"__tensor__": "not a pointer"},  # a user dict that looks like a tag
        "plain": [1, "a", None, 2.5],
    }
    back = _round_trip(tmp_path, obj)
    assert set(back["state"]) == {0, 7} and torch.equal(
        back["state"][0]["exp_avg"], torch.arange(4.0)
    )
    assert back["betas"] == (0.9, 0.999) and isinstance(back["betas"], tuple)
    assert back["rng"].dtype == np.uint32 and back["rng"].tolist() == [0, 1, 2, 3, 4]
    assert back["tricky"] == {"__tensor__": "not a pointer"} and back["plain"] == [
        1,
        "a",
        None,
        2.5,
    ]


def test_a_missing_tensor_file_is_an_error(tmp_path):
    files = encode_tree("s", {"w": torch.ones(2)})
    write_file(tmp_path / "s.json", files["s.json"])
    with pytest.raises(CheckpointError):
        load_tree(tmp_path, "s")
