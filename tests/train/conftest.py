"""Fixtures of the run tests (``small_scenes`` lives in tests/conftest.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from groundattn.config import load_config
from groundattn.train.registry import recipe_class
from groundattn.train.run import run

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.fixture(scope="session")
def pretrained(small_scenes, tmp_path_factory) -> Path:
    """A tiny pretraining run of 2 steps on the small scenes; returns its ``model/``."""
    from groundattn.config import PretrainConfig
    from groundattn.train.pretrain import PretrainRecipe

    out = tmp_path_factory.mktemp("pretrain") / "run"
    config = load_config(
        PretrainConfig,
        CONFIGS / "pretrain" / "tiny.yaml",
        [f"data.root={small_scenes}", "optim.max_steps=2"],
    )
    run(PretrainRecipe(config), out)
    return out / "model"


_SCRIPT = """
import sys

from groundattn.config import load_config
from groundattn.train.registry import recipe_class
from groundattn.train.run import run

task, config_file, out, *overrides = sys.argv[1:]
recipe = recipe_class(task)
run(recipe(load_config(recipe.config_class, config_file, overrides)), out)
"""


def _losses(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "loss" in r]


@pytest.fixture
def same_losses_in_two_processes(tmp_path):
    """Checks that a task's run logs the same losses with one process and with two (torchrun, gloo)."""

    def check(task: str, config_file: Path, overrides: list[str], keys: list[str]) -> None:
        one, two = tmp_path / "one", tmp_path / "two"
        recipe = recipe_class(task)
        run(recipe(load_config(recipe.config_class, config_file, overrides)), one)
        script = tmp_path / "run_task.py"
        script.write_text(_SCRIPT)
        torchrun = Path(sys.executable).parent / "torchrun"
        cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", str(script), task]
        done = subprocess.run(
            [*cmd, str(config_file), str(two), *overrides],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        ones, twos = _losses(one), _losses(two)
        assert [r["step"] for r in ones] == [r["step"] for r in twos] and ones
        for a, b in zip(ones, twos, strict=True):
            for key in keys:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)

    return check
