"""A run knows what it is: non-finite values stop it, a resume is the run it claims to be,
a finished run is never replaced, exports are verified, evaluation never writes over a run."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from groundattn.config import ConfigError, VGPConfig, VQAConfig, load_config
from groundattn.errors import ExistingFileError, NonFiniteError
from groundattn.eval.saved import evaluate
from groundattn.train.checkpoint import MANIFEST_FILE, CheckpointError, latest_checkpoint
from groundattn.train.run import run
from groundattn.train.vgp import VGPRecipe
from groundattn.train.vqa import VQARecipe

CONFIGS = Path(__file__).parents[2] / "configs"


def _vgp(root, *extra):
    return load_config(VGPConfig, CONFIGS / "vgp" / "tiny.yaml", [f"data.root={root}", *extra])


def test_a_non_finite_loss_stops_the_run_and_exports_nothing(small_scenes, tmp_path):
    out = tmp_path / "run"
    # lr = 1e30 passes the config (finite) but makes the weights overflow after a step or two.
    config = _vgp(
        small_scenes, "optim.max_steps=6", "run.save_every=1", "optim.lr=1e30", "optim.new_lr=1e30"
    )
    with pytest.raises(
        NonFiniteError, match=r"step \d+: the (loss|gradient norm) is (nan|inf)"
    ) as error:
        run(VGPRecipe(config), out)
    assert "last good checkpoint" in str(error.value)
    assert not (out / "model").exists() and not (out / "summary.json").exists()


def test_non_finite_region_features_are_refused_where_they_are_read(small_scenes, tmp_path):
    import shutil

    root = tmp_path / "scenes"
    shutil.copytree(small_scenes, root)
    with h5py.File(root / "features" / "train.h5", "r+") as f:
        image = sorted(f["images"])[0]
        features = f["images"][image]["features"]
        values = features[()]
        values[1, 3] = np.nan
        features[...] = values
    with pytest.raises(
        NonFiniteError, match=rf"train.h5: image {image}: features row 1 holds inf or nan"
    ):
        run(VGPRecipe(_vgp(root, "optim.max_steps=1")), tmp_path / "run")


def test_resume_refuses_a_change_of_result_and_records_an_extension(small_scenes, tmp_path):
    out = tmp_path / "run"
    run(VGPRecipe(_vgp(small_scenes, "optim.max_steps=2", "run.save_every=1")), out)
    (out / "summary.json").unlink()  # as if it had been stopped after its last checkpoint
    for change in ("supervision.method=none", "optim.lr=0.002", "run.seed=1"):
        config_before = (out / "config.yaml").read_text()
        with pytest.raises(ConfigError, match="--resume: the configuration differs") as error:
            run(VGPRecipe(_vgp(small_scenes, "optim.max_steps=2", change)), out, resume=True)
        assert change.split("=")[0] in str(error.value)
        assert (out / "config.yaml").read_text() == config_before  # nothing written on refusal
    summary = run(
        VGPRecipe(_vgp(small_scenes, "optim.max_steps=3", "run.save_every=1")), out, resume=True
    )
    assert summary["steps"] == 3
    record = json.loads((out / "resumes.jsonl").read_text().splitlines()[-1])
    assert record["changed"] == {"optim.max_steps": [2, 3]}


def test_a_finished_run_is_never_replaced(small_scenes, tmp_path):
    out = tmp_path / "run"
    run(VGPRecipe(_vgp(small_scenes, "optim.max_steps=1")), out)
    for checkpoint in (out / "checkpoints").iterdir():
        shutil.rmtree(checkpoint)
    model = (out / "model" / "model.safetensors").read_bytes()
    with pytest.raises(ExistingFileError, match="holds a finished run"):
        run(VGPRecipe(_vgp(small_scenes, "optim.max_steps=1")), out)
    with pytest.raises(ExistingFileError, match="no checkpoint to resume from"):
        run(VGPRecipe(_vgp(small_scenes, "optim.max_steps=1")), out, resume=True)
    assert (out / "model" / "model.safetensors").read_bytes() == model


def test_an_export_carries_hashes_and_a_flipped_bit_is_caught(small_scenes, tmp_path):
    out = tmp_path / "run"
    run(VGPRecipe(_vgp(small_scenes, "optim.max_steps=1")), out)
    manifest = json.loads((out / "model" / MANIFEST_FILE).read_text())
    assert {"model.safetensors", "config.json"} <= set(manifest["files"])
    weights = out / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        evaluate(out / "model")
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        run(
            VGPRecipe(_vgp(small_scenes, "optim.max_steps=1", f"model.init={out / 'model'}")),
            tmp_path / "b",
        )


def test_evaluate_writes_to_a_fresh_directory_by_default(small_scenes, tmp_path):
    out = tmp_path / "vqa"
    config = load_config(
        VQAConfig,
        CONFIGS / "vqa" / "tiny.yaml",
        [f"data.root={small_scenes}", "optim.max_steps=1", "data.predict_splits=[val]"],
    )
    run(VQARecipe(config), out)
    own = (out / "predictions_val.json").read_bytes()
    for _ in range(2):
        evaluate(out / "model", split="val")
    assert (out / "predictions_val.json").read_bytes() == own
    for fresh in ("val-1", "val-2"):
        assert (out / "evaluations" / fresh / "predictions_val.json").is_file()
    with pytest.raises(ConfigError, match="--batch-size"):
        evaluate(out / "model", split="val", batch_size=0)
    assert latest_checkpoint(out) is not None
