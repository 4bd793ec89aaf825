import json
import subprocess
import sys
from pathlib import Path

import pytest

from groundattn.config import VGPConfig, load_config
from groundattn.train.run import run
from groundattn.train.vgp import VGPRecipe

TINY = Path(__file__).parents[2] / "configs" / "vgp" / "tiny.yaml"


def _losses(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "loss" in r]


@pytest.mark.skipif(sys.platform != "linux", reason="gloo process group on Linux")
def test_two_processes_give_the_losses_of_one(small_scenes, tmp_path):
    # No dropout: the two runs draw their masks from different random streams.
    args = [
        f"data.root={small_scenes}",
        "model.dropout=0",
        "optim.max_steps=3",
        "optim.batch_size=16",
        "run.log_every=1",
        "data.num_workers=0",
    ]
    one = tmp_path / "one"
    run(VGPRecipe(load_config(VGPConfig, TINY, args)), one)

    two = tmp_path / "two"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "groundattn.cli",
        "train",
        "vgp",
        "--config",
        str(TINY),
        "--out",
        str(two),
    ]
    cmd += [x for a in args for x in ("--set", a)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    ones, twos = _losses(one), _losses(two)
    assert [r["step"] for r in ones] == [r["step"] for r in twos] == [1, 2, 3]
    for a, b in zip(ones, twos, strict=True):
        for key in ("loss", "loss_id", "loss_vgp", "loss_att_txt2img", "loss_att_img2txt"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
