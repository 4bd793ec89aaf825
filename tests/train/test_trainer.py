"""AdamW groups of pretrained, new and frozen parameters (groundattn/train/trainer.py); what
a run's new encoder parts start from (groundattn/train/models.py and run.py)."""

import numpy as np
import pytest
import torch
from torch import nn

from groundattn.config import ConfigError, ModelSection, OptimSection
from groundattn.data.store import FeatureStore, FeatureStoreWriter, Provenance, RegionFeatures
from groundattn.train.models import GEOMETRY_PROJECTION, build_encoder
from groundattn.train.run import _standardise_new_projections
from groundattn.train.trainer import _param_groups


class _Task(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.head = nn.Linear(4, 2)


def test_new_parameters_train_at_new_lr_and_decay_only_matrices():
    task = _Task()
    optim = OptimSection(lr=1e-4, new_lr=1e-3, weight_decay=0.01)
    groups = _param_groups(task, optim, frozenset({"head.weight", "head.bias"}))
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(task.named_parameters())
    assert by_param[id(named["encoder.0.weight"])]["lr"] == 1e-4
    assert by_param[id(named["encoder.0.weight"])]["weight_decay"] == 0.01
    assert by_param[id(named["encoder.1.weight"])]["weight_decay"] == 0.0  # LayerNorm
    assert by_param[id(named["head.weight"])]["lr"] == 1e-3
    assert by_param[id(named["head.weight"])]["weight_decay"] == 0.01
    bias = by_param[id(named["head.bias"])]
    assert (bias["lr"], bias["weight_decay"]) == (1e-3, 0.0)
    assert sum(len(g["params"]) for g in groups) == len(named)
    # new_lr=None: one learning rate for everything.
    flat = _param_groups(task, OptimSection(lr=1e-4, new_lr=None), frozenset({"head.weight"}))
    assert {g["lr"] for g in flat} == {1e-4}


def test_lr_by_name_sets_the_rate_of_the_parameters_its_first_matching_glob_names():
    task = _Task()
    optim = OptimSection(
        lr=1e-4, new_lr=1e-3, lr_by_name={"encoder.0.*": 3e-4, "*.weight": 5e-4, "*": 7e-4}
    )
    groups = _param_groups(task, optim, frozenset({"head.weight", "head.bias"}))
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(task.named_parameters())
    expected = {
        "encoder.0.weight": 3e-4,  # the first glob wins over "*.weight"
        "encoder.0.bias": 3e-4,
        "encoder.1.weight": 5e-4,  # a LayerNorm, still without decay
        "encoder.1.bias": 7e-4,
        "head.weight": 5e-4,  # over new_lr too
        "head.bias": 7e-4,
    }
    assert {name: lr_of[id(p)] for name, p in named.items()} == expected
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay_of[id(named["encoder.1.weight"])] == 0.0
    assert decay_of[id(named["encoder.0.weight"])] == 0.01
    with pytest.raises(ConfigError, match="optim.lr_by_name: 'decoder.*' matches no parameter"):
        _param_groups(_Task(), OptimSection(lr_by_name={"decoder.*": 1e-3}), frozenset())
    frozen = OptimSection(freeze=["encoder.0"], lr_by_name={"encoder.0.*": 1e-3})
    with pytest.raises(ConfigError, match="'encoder.0.\\*' matches only frozen parameters"):
        _param_groups(_Task(), frozen, frozenset())


def test_frozen_parameters_leave_the_optimizer():
    task = _Task()
    groups = _param_groups(task, OptimSection(freeze=["encoder.0"]), frozenset())
    optimized = {id(p) for g in groups for p in g["params"]}
    for name, p in task.named_parameters():
        frozen = name.startswith("encoder.0.")
        assert p.requires_grad is not frozen and (id(p) in optimized) is not frozen
    with pytest.raises(ConfigError, match="optim.freeze: 'encoder.9' names no parameter"):
        _param_groups(_Task(), OptimSection(freeze=["encoder.9"]), frozenset())
    with pytest.raises(ConfigError, match="names no parameter"):  # a prefix is a whole name part
        _param_groups(_Task(), OptimSection(freeze=["enc"]), frozenset())


def test_build_encoder_reports_what_no_weights_gave(tmp_path):
    encoder, fresh = build_encoder(ModelSection(), feature_dim=16)  # MiniLM-L6
    assert "embeddings.visual.feature_projection.weight" in fresh
    assert "embeddings.visual.feature_mean" in fresh
    assert not any(name.startswith("encoder.layer.") for name in fresh)
    tiny, fresh = build_encoder(ModelSection(preset="tiny"), feature_dim=16)
    assert fresh == set(tiny.state_dict())


def test_new_visual_projections_are_standardised_for_the_store(tmp_path):
    # Two images of 64 × 32 pixels; regions: r0 and one box each, features 1 and 3 (image a), 5 and 7.
    boxes = np.array([[0, 0, 64, 32], [16, 8, 48, 24]], np.float32)
    with FeatureStoreWriter(tmp_path / "s.h5", 2) as writer:
        for image, first in (("a", 1.0), ("b", 5.0)):
            features = np.array([[first, 0.0], [first + 2, 0.0]], np.float32)
            provenance = np.array([Provenance.WHOLE_IMAGE, Provenance.GROUND_TRUTH], np.uint8)
            writer.add(image, RegionFeatures(boxes, features, provenance, width=64, height=32))
    # The geometries: r0 (0, 0, 1, 1, 1, 1) and (0.25, 0.25, 0.75, 0.75, 0.5, 0.5), twice each.
    geometry_mean = torch.tensor([0.125, 0.125, 0.875, 0.875, 0.75, 0.75])
    geometry_std = torch.tensor([0.125, 0.125, 0.125, 0.125, 0.25, 0.25])
    feature_mean, feature_std = torch.tensor([4.0, 0.0]), torch.tensor([5**0.5, 1.0])
    with FeatureStore(tmp_path / "s.h5") as store:
        encoder, fresh = build_encoder(ModelSection(preset="tiny"), feature_dim=2)
        _standardise_new_projections(encoder, fresh, store)
        visual = encoder.embeddings.visual
        torch.testing.assert_close(visual.feature_mean, feature_mean)
        torch.testing.assert_close(visual.feature_std, feature_std)  # the constant one: 1
        torch.testing.assert_close(visual.geometry_mean, geometry_mean)
        torch.testing.assert_close(visual.geometry_std, geometry_std)
        # A VL-BERT checkpoint brings a feature projection but no geometry projection.
        encoder, _ = build_encoder(ModelSection(preset="tiny"), feature_dim=2)
        _standardise_new_projections(encoder, {GEOMETRY_PROJECTION}, store)
        visual = encoder.embeddings.visual
        assert bool((visual.feature_mean == 0).all() and (visual.feature_std == 1).all())
        torch.testing.assert_close(visual.geometry_std, geometry_std)
        # After model.init nothing is new, nothing changes.
        _standardise_new_projections(encoder, set(), store)
        torch.testing.assert_close(visual.geometry_mean, geometry_mean)
