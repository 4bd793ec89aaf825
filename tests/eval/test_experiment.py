import os
from pathlib import Path

import pytest

from groundattn.config import ConfigError, ExperimentConfig, load_config
from groundattn.eval.experiment import run_experiment

CONFIGS = Path(__file__).parents[2] / "configs"


def test_tiny_experiment_writes_the_table_and_resumes(small_scenes, tmp_path):
    sets = [f"data_root={small_scenes}", "seeds=[0]"]
    sets += [
        f"{task}={CONFIGS / task / 'tiny.yaml'}" for task in ("pretrain", "vgp", "vqa", "refcoco")
    ]
    config = load_config(ExperimentConfig, CONFIGS / "experiment" / "tiny.yaml", sets)
    out = tmp_path / "experiment"
    said: list[str] = []
    records = run_experiment(config, out, announce=said.append)
    assert [r["method"] for r in records] == ["chance", "original", "none", "direct"]
    chance, *records = records
    for key in ("vqa_val", "refcoco_detected_testA", "refcoco_ground_truth_val", "rollout_best"):
        assert 0.0 < chance[key] <= 1.0  # read from Original's stage summaries
    assert chance["grounding_best"] == chance["grounding_mean"] == chance["rollout_best"]
    for record in records:
        for key in (
            "vqa_val",
            "refcoco_detected_testA",
            "refcoco_ground_truth_testB",
            "grounding_best",
        ):
            assert 0.0 <= record[key] <= 1.0
    table = (out / "results.md").read_text()
    assert (
        "| Original |" in table
        and "| Direct Attention |" in table
        and "RefCOCO+ (Detected)" in table
        and "| Chance / prior |" in table
        and "Paired difference to w/o Attention" in table
        and "(n = 1, no interval)" in table
    )
    assert (out / "results.csv").read_text().splitlines()[1].startswith("chance,0,")
    assert (out / "differences.csv").is_file() and (out / "results.png").is_file()
    assert (out / "attention" / "compare.png").is_file()

    # A crashed experiment continues: only the missing stage runs again.
    (out / "vqa" / "direct" / "seed-0" / "summary.json").unlink()
    said.clear()
    run_experiment(config, out, announce=said.append)
    ran = [line for line in said if not line.startswith("reuse") and not line.startswith(" ")]
    assert len(ran) == 1 and "vqa/direct/seed-0" in ran[0]

    # A stage is reused only with the configuration, data and parent it was run with.
    changed = load_config(
        ExperimentConfig,
        CONFIGS / "experiment" / "tiny.yaml",
        [*sets, "overrides.vqa=[optim.max_steps=3]"],
    )
    with pytest.raises(
        ConfigError, match=r"vqa/original/seed-0 was run with another .*optim\.max_steps"
    ):
        run_experiment(changed, out, announce=said.append)
    caption = next((small_scenes / "Sentences").iterdir())
    os.utime(caption, ns=(caption.stat().st_atime_ns, caption.stat().st_mtime_ns + 1))
    try:
        with pytest.raises(ConfigError, match=r"pretrain was run with another .*data"):
            run_experiment(config, out, announce=said.append)
    finally:
        os.utime(caption, ns=(caption.stat().st_atime_ns, caption.stat().st_mtime_ns - 1))
    assert "## What was run" in (out / "results.md").read_text()
