import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from groundattn.config import RefCOCOConfig, VGPConfig, VQAConfig, load_config
from groundattn.train.registry import recipe_class
from groundattn.train.run import run

CONFIGS = Path(__file__).parents[2] / "configs"
# task → (its config class, the loss keys it logs, its dropouts beyond the encoder's)
TASKS = {
    "vgp": (
        VGPConfig,
        ("loss", "loss_id", "loss_vgp", "loss_att_txt2img", "loss_att_img2txt"),
        [],
    ),
    "vqa": (VQAConfig, ("loss",), ["head.dropout=0"]),
    "refcoco": (RefCOCOConfig, ("loss",), []),
}


def _losses(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "loss" in r]


@pytest.mark.skipif(sys.platform != "linux", reason="gloo process group on Linux")
@pytest.mark.parametrize("task", list(TASKS))
def test_two_processes_give_the_losses_of_one(small_scenes, tmp_path, task):
    # No dropout: the two runs draw their masks from different random streams.
    config_class, keys, no_dropout = TASKS[task]
    tiny = CONFIGS / task / "tiny.yaml"
    args = [
        f"data.root={small_scenes}",
        "model.dropout=0",
        "optim.max_steps=3",
        "optim.batch_size=16",
        "run.log_every=1",
        "data.num_workers=0",
        *no_dropout,
    ]
    one = tmp_path / "one"
    run(recipe_class(task)(load_config(config_class, tiny, args)), one)

    two = tmp_path / "two"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "groundattn.cli"]
    cmd += ["train", task, "--config", str(tiny), "--out", str(two)]
    cmd += [x for a in args for x in ("--set", a)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    ones, twos = _losses(one), _losses(two)
    assert [r["step"] for r in ones] == [r["step"] for r in twos] == [1, 2, 3]
    for a, b in zip(ones, twos, strict=True):
        for key in keys:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    # Validation sums its counts over both processes: the same metrics as one process.
    after_one = json.loads((one / "summary.json").read_text())["after"]
    after_two = json.loads((two / "summary.json").read_text())["after"]
    for key, value in after_one.items():
        if isinstance(value, float):
            assert after_two[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


@pytest.mark.skipif(sys.platform != "linux", reason="gloo process group on Linux")
def test_the_experiment_under_torchrun_gives_the_table_of_one_process(small_scenes, tmp_path):
    # The tiny preset without dropout (each process draws its own masks), one seed.
    config = tmp_path / "tiny.yaml"
    no_dropout = {
        "pretrain": ["optim.max_steps=2", "model.dropout=0"],
        "vgp": ["optim.max_steps=2", "model.dropout=0"],
        "vqa": ["optim.max_steps=2", "model.dropout=0", "head.dropout=0"],
        "refcoco": ["optim.max_steps=2", "model.dropout=0"],
    }
    config.write_text(
        yaml.safe_dump(
            {
                "data_root": str(small_scenes),
                "prepare_scenes": False,
                "seeds": [0],
                "methods": ["none", "direct"],
                **{stage: str(CONFIGS / stage / "tiny.yaml") for stage in no_dropout},
                "overrides": no_dropout,
                "visualize": False,
            }
        )
    )
    tables = {}
    for processes in (1, 2):
        out = tmp_path / f"experiment-{processes}"
        cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone"]
        cmd += [f"--nproc_per_node={processes}", "-m", "groundattn.cli", "experiment"]
        cmd += ["--config", str(config), "--out", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        with open(out / "results.csv", newline="") as f:
            tables[processes] = list(csv.DictReader(f))
    one, two = tables[1], tables[2]
    assert [(r["method"], r["seed"]) for r in one] == [(r["method"], r["seed"]) for r in two]
    assert len(one) == 4  # chance, original, none, direct
    for a, b in zip(one, two, strict=True):
        for key, value in a.items():
            if value and key not in ("method", "seed"):  # sums in another order: float noise
                # Rates are ratios of counts; the region spread sums float32 distances.
                rel = 1e-6 if key == "region_spread" else 1e-9
                assert float(b[key]) == pytest.approx(float(value), rel=rel), (a["method"], key)
