"""EfficientNet-Lite0: the packaged ImageNet checkpoint fits exactly; folding keeps outputs."""

from __future__ import annotations

import copy

import pytest
import torch

from groundattn.data import efficientnet
from groundattn.data.efficientnet import (
    CheckpointMismatchError,
    EfficientNetLite0,
    checkpoint_key_map,
    load_efficientnet_lite0,
    map_checkpoint,
)


@pytest.fixture(scope="module")
def checkpoint() -> dict[str, torch.Tensor]:
    return torch.load(efficientnet.weights_file(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def network() -> EfficientNetLite0:
    return load_efficientnet_lite0()


def test_every_checkpoint_tensor_has_one_place_and_none_is_missing(checkpoint):
    expected = EfficientNetLite0().state_dict()
    mapped = map_checkpoint(checkpoint)
    # a bijection: no two checkpoint keys land on one name, and every name is filled
    assert len(mapped) == len(checkpoint)
    assert set(mapped) == set(expected)
    for key, tensor in mapped.items():
        assert tensor.shape == expected[key].shape, key
    # the prefix map itself is one-to-one, and onto the model's modules with tensors
    prefixes = checkpoint_key_map()
    assert len(set(prefixes.values())) == len(prefixes)
    assert {k.rpartition(".")[0] for k in expected} == set(prefixes.values())
    assert {k.rpartition(".")[0] for k in checkpoint} == set(prefixes)


def test_the_strict_loader_loads_the_checkpoint_values(checkpoint, network):
    assert not network.training
    state = network.state_dict()
    for key, tensor in map_checkpoint(checkpoint).items():
        torch.testing.assert_close(state[key], tensor, rtol=0, atol=0)


def test_an_unknown_or_missing_tensor_is_an_error(checkpoint, tmp_path):
    extra = dict(checkpoint) | {"_extra.weight": torch.zeros(1)}
    with pytest.raises(CheckpointMismatchError, match="_extra.weight"):
        map_checkpoint(extra)
    partial = {k: v for k, v in checkpoint.items() if not k.startswith("_fc.")}
    path = tmp_path / "partial.pth"
    torch.save(partial, path)
    with pytest.raises(CheckpointMismatchError, match="missing"):
        load_efficientnet_lite0(path)


def test_folded_equals_unfolded_and_shapes(network):
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 64, 64)
    folded = copy.deepcopy(network).fold_batch_norms().eval()
    with torch.inference_mode():
        logits, fmap = network(pixels), network.feature_map(pixels)
        logits_f, fmap_f = folded(pixels), folded.feature_map(pixels)
    assert logits.shape == (2, 1000)
    assert fmap.shape == (2, efficientnet.HEAD_CHANNELS, 2, 2)
    torch.testing.assert_close(fmap_f, fmap, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits_f, logits, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())


def test_odd_sizes_give_ceil_of_the_stride():
    with torch.inference_mode():
        fmap = EfficientNetLite0().eval().feature_map(torch.randn(1, 3, 65, 40))
    assert fmap.shape[2:] == (3, 2)  # ceil(65 / 32), ceil(40 / 32)
