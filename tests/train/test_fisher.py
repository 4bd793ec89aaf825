"""VGP runs with knowledge distillation and EWC from a tiny pretraining run (Original)."""

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import torch

from groundattn.config import ConfigError, VGPConfig, load_config
from groundattn.eval.saved import evaluate
from groundattn.train.checkpoint_io import read_tensors
from groundattn.train.fisher import anchor_fisher
from groundattn.train.run import run
from groundattn.train.vgp import VGPRecipe

TINY = Path(__file__).parents[2] / "configs" / "vgp" / "tiny.yaml"
KD = ["distill.mlm_weight=1.0", "distill.mrc_weight=1.0", "distill.hidden_weight=1.0"]


@pytest.fixture
def original(pretrained, tmp_path) -> Path:
    """A private copy of the tiny pretraining run's model/ (the Fisher is written beside it)."""
    return Path(shutil.copytree(pretrained, tmp_path / "original"))


def _fisher(original, small_scenes, **kw):
    settings = dict(split="train", batches=2, batch_size=4, seed=0)
    return anchor_fisher(original, small_scenes, **{**settings, **kw})


def test_fisher_is_stored_beside_the_model_verified_and_reused(original, small_scenes, caplog):
    fisher = _fisher(original, small_scenes)
    (tensors,) = original.glob("fisher-*.safetensors")
    manifest = json.loads(tensors.with_suffix(".json").read_text())
    assert manifest["settings"]["batches"] == 2 and len(manifest["sha256"]) == 64
    weights = read_tensors(original / "model.safetensors")
    for name, f in fisher.items():  # every encoder parameter, same shape, non-negative
        assert f.shape == weights[f"encoder.{name}"].shape and (f >= 0).all()
    assert sum(float(f.sum()) for f in fisher.values()) > 0
    stamp = tensors.stat().st_mtime_ns
    again = _fisher(original, small_scenes)
    assert tensors.stat().st_mtime_ns == stamp  # reused, not estimated again
    assert all(torch.equal(again[n], fisher[n]) for n in fisher)
    # Other settings: another file beside it.
    _fisher(original, small_scenes, batches=1)
    assert len(list(original.glob("fisher-*.safetensors"))) == 2
    # A damaged file is noticed and estimated again.
    tensors.write_bytes(tensors.read_bytes()[:-8] + b"\0" * 8)
    with caplog.at_level(logging.WARNING):
        repaired = _fisher(original, small_scenes)
    assert "does not verify" in caplog.text
    assert all(torch.equal(repaired[n], fisher[n]) for n in fisher)  # deterministic estimate


def _config(root, original, *extra):
    base = [f"data.root={root}", "model.dropout=0", f"model.init={original}", "optim.max_steps=2"]
    return load_config(VGPConfig, TINY, [*base, "run.log_every=1", *extra])


@pytest.mark.parametrize("method", ["none", "semi-direct"])
def test_a_run_with_distillation_and_ewc_logs_its_terms_and_exports_a_plain_model(
    original, small_scenes, tmp_path, method
):
    out = tmp_path / "run"
    sets = [*KD, "ewc.weight=10.0", "ewc.batches=2", "ewc.batch_size=4", "optim.warmup_ratio=0"]
    summary = run(
        VGPRecipe(_config(small_scenes, original, f"supervision.method={method}", *sets)), out
    )
    assert summary["steps"] == 2
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in logged if "loss" in r]
    for key in ("loss_kd_mlm", "loss_kd_mrc", "loss_kd_hidden", "loss_ewc"):
        assert all(key in r and r[key] >= -1e-6 for r in train), key  # KL: rounding at 0
    assert train[0]["loss_ewc"] == pytest.approx(0.0, abs=1e-6)  # step 1 starts at the anchor
    assert train[-1]["loss_ewc"] > 0
    assert list(original.glob("fisher-*.json"))
    # The export holds the VGP model only and evaluates without teacher or anchor.
    keys = read_tensors(out / "model" / "model.safetensors").keys()
    assert not any(k.startswith(("mlm.", "mrc.")) for k in keys)
    assert 0 <= evaluate(out / "model", split="val", task="vgp")["id_accuracy"] <= 1


def test_forgetting_configs_are_checked(original, small_scenes, tmp_path):
    bare = [f"data.root={small_scenes}", "optim.max_steps=1"]
    with pytest.raises(ConfigError, match="ewc needs model.init"):
        run(VGPRecipe(load_config(VGPConfig, TINY, [*bare, "ewc.weight=1.0"])), tmp_path / "a")
    with pytest.raises(ConfigError, match="distill needs a teacher"):
        run(
            VGPRecipe(load_config(VGPConfig, TINY, [*bare, "distill.mlm_weight=1.0"])),
            tmp_path / "b",
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # before any work
    with pytest.raises(ConfigError, match="distill.*mlm_weight, mrc_weight or hidden_weight"):
        _config(small_scenes, original, "distill.mlm_temperature=3.0")
    with pytest.raises(ConfigError, match="distill.mlm_temperature"):
        _config(small_scenes, original, "distill.mlm_weight=1.0", "distill.mlm_temperature=0")
    vgp_run = tmp_path / "vgp"
    run(VGPRecipe(_config(small_scenes, original)), vgp_run)
    with pytest.raises(ConfigError, match="a vgp model"):
        run(
            VGPRecipe(_config(small_scenes, original, f"distill.teacher={vgp_run / 'model'}", *KD)),
            tmp_path / "kd",
        )


@pytest.mark.skipif(sys.platform != "linux", reason="gloo process group on Linux")
def test_distillation_in_two_processes_gives_the_losses_of_one(
    original, small_scenes, same_losses_in_two_processes
):
    args = [
        f"data.root={small_scenes}",
        "model.dropout=0",
        f"model.init={original}",
        "optim.max_steps=2",
        "run.log_every=1",
        *KD,
        "ewc.weight=10.0",
        "ewc.batches=2",
        "ewc.batch_size=4",
    ]
    keys = ["loss", "loss_vgp", "loss_kd_mlm", "loss_kd_mrc", "loss_kd_hidden", "loss_ewc"]
    same_losses_in_two_processes("vgp", TINY, args, keys)
