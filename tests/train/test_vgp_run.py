import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from groundattn.config import ConfigError, VGPConfig, load_config
from groundattn.train.checkpoint import latest_checkpoint
from groundattn.train.run import run
from groundattn.train.vgp import VGPRecipe

TINY = Path(__file__).parents[2] / "configs" / "vgp" / "tiny.yaml"


def _config(root, *extra):
    return load_config(VGPConfig, TINY, [f"data.root={root}", "model.dropout=0.1", *extra])


def test_tiny_run_writes_logs_checkpoints_and_summary(small_scenes, tmp_path):
    out = tmp_path / "run"
    summary = run(
        VGPRecipe(
            _config(small_scenes, "optim.max_steps=4", "run.log_every=2", "run.save_every=2")
        ),
        out,
    )
    assert summary["steps"] == 4
    for key in (
        "id_accuracy",
        "vgp_accuracy",
        "vgp_macro_f1",
        "grounding_best",
        "grounding_mean",
        "rollout_best",
    ):
        assert 0.0 <= summary["after"][key] <= 1.0 and key in summary["before"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [2, 4]
    for r in train:  # every loss is logged on its own
        assert {
            "loss_id",
            "loss_vgp",
            "loss_att_txt2img",
            "loss_att_img2txt",
            "samples_per_s",
        } <= set(r)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "model" / "model.safetensors").is_file() and (out / "summary.json").is_file()
    assert latest_checkpoint(out).name == "step-00000004"


@pytest.mark.parametrize("method", ["none", "indirect", "semi-direct"])
def test_every_method_trains(small_scenes, tmp_path, method):
    extra = ["supervision.per_head=true"] if method == "semi-direct" else []
    summary = run(
        VGPRecipe(
            _config(small_scenes, f"supervision.method={method}", "optim.max_steps=2", *extra)
        ),
        tmp_path / method,
    )
    records = [json.loads(line) for line in (tmp_path / method / "metrics.jsonl").open()]
    logged = [r for r in records if "loss" in r][-1]
    attention = logged["loss_att_txt2img"] + logged["loss_att_img2txt"]
    assert summary["steps"] == 2 and summary["method"] == method
    assert (attention > 0) == (method != "none") and math.isfinite(logged["loss"])
    # Only the methods that read attention have supervised heads to report.
    assert ("supervised_heads" in summary) == (method == "semi-direct")


def test_head_selection_and_top_k(small_scenes, tmp_path):
    chosen = run(
        VGPRecipe(
            _config(
                small_scenes,
                "supervision.layers=[1]",
                "supervision.heads=[0,2]",
                "optim.max_steps=2",
            )
        ),
        tmp_path / "a",
    )
    assert chosen["supervised_heads"] == [[1, 0], [1, 2]]
    summary = run(
        VGPRecipe(_config(small_scenes, "supervision.top_k_heads=2", "optim.max_steps=2")),
        tmp_path / "b",
    )
    # The two heads of highest grounding accuracy before fine-tuning (tiny: 2 layers × 4 heads).
    before = torch.tensor(summary["before"]["grounding_per_head"])
    best = sorted(divmod(int(i), 4) for i in before.topk(2).indices)
    assert summary["supervised_heads"] == [list(h) for h in best]


def test_bad_configs_stop_before_any_work(small_scenes, tmp_path):
    with pytest.raises(ConfigError, match="supervision.method"):
        _config(small_scenes, "supervision.method=attend")
    with pytest.raises(ConfigError, match="data.root"):
        run(VGPRecipe(_config(tmp_path / "nowhere")), tmp_path / "run")
    with pytest.raises(ConfigError, match="supervision.layers"):
        run(VGPRecipe(_config(small_scenes, "supervision.layers=[7]")), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model" / "model.safetensors"))


def test_sigkill_then_resume_equals_uninterrupted(small_scenes, tmp_path):
    args = [
        f"data.root={small_scenes}",
        "model.dropout=0.1",
        "optim.max_steps=10",
        "run.save_every=1",
        "data.num_workers=1",
    ]
    reference = tmp_path / "reference"
    run(VGPRecipe(load_config(VGPConfig, TINY, args)), reference)

    killed = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "groundattn.cli",
        "train",
        "vgp",
        "--config",
        str(TINY),
        "--out",
        str(killed),
    ]
    cmd += [x for a in args for x in ("--set", a)]
    child = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "checkpoints" / "step-00000003").exists():
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 0.3))  # anywhere: mid-step, mid-save
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert latest_checkpoint(killed) is not None, "the child was killed before its first checkpoint"

    run(VGPRecipe(load_config(VGPConfig, TINY, args)), killed, resume=True)
    ours, theirs = _weights(killed), _weights(reference)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


def test_gradient_accumulation_counts_optimizer_steps(small_scenes, tmp_path):
    out = tmp_path / "accum"
    summary = run(
        VGPRecipe(
            _config(small_scenes, "optim.grad_accum=2", "optim.max_steps=2", "run.log_every=1")
        ),
        out,
    )
    assert summary["steps"] == 2
    state = json.loads((out / "checkpoints" / "step-00000002" / "state.json").read_text())
    assert state["batch_in_epoch"] == 4  # two micro-batches per optimizer step
