"""Tests of groundattn/train/trainer.py: AdamW groups of pretrained, new and frozen parameters."""

import pytest
from torch import nn

from groundattn.config import ConfigError, ModelSection, OptimSection
from groundattn.train.models import build_encoder
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
