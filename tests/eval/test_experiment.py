import json
import os
from pathlib import Path

import pytest

from groundattn.config import ConfigError, ExperimentConfig, load_config
from groundattn.eval import experiment
from groundattn.eval.experiment import run_experiment

CONFIGS = Path(__file__).parents[2] / "configs"


def test_tiny_experiment_writes_the_table_and_resumes(small_scenes, tmp_path, monkeypatch):
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
    # Nor by other code: a stage of yesterday's groundattn is not today's.
    monkeypatch.setattr(experiment, "code_fingerprint", lambda: "0" * 64)
    with pytest.raises(ConfigError, match=r"pretrain was run with another .*differs in: code"):
        run_experiment(config, out, announce=said.append)
    assert "## What was run" in (out / "results.md").read_text()


def test_original_alone_over_seeds(small_scenes, tmp_path):
    # methods=[]: no VGP row, the pretrained model's downstream results over seeds.
    sets = [f"data_root={small_scenes}", "seeds=[0, 1]", "methods=[]"]
    sets += [f"{task}={CONFIGS / task / 'tiny.yaml'}" for task in ("pretrain", "vqa", "refcoco")]
    config = load_config(ExperimentConfig, CONFIGS / "experiment" / "tiny.yaml", sets)
    records = run_experiment(config, tmp_path / "experiment", announce=lambda _: None)
    assert [(r["method"], r["seed"]) for r in records] == [
        ("chance", 0),
        ("original", 0),
        ("original", 1),
    ]
    assert not (tmp_path / "experiment" / "vgp").exists()
    assert "grounding_best" not in records[1]  # no VGP validation to read it from
    table = (tmp_path / "experiment" / "results.md").read_text()
    assert "| Original |" in table and "Grounding accuracy" not in table.split("\n\n")[1]
    assert "rows (none: Original alone)" in table


def test_rows_are_labelled_configurations():
    config = load_config(ExperimentConfig, CONFIGS / "experiment" / "forgetting.yaml")
    assert [r.label for r in config.variants] == [
        "w/o Attention",
        "Indirect Attention",
        "Direct Attention",
        "Semi-direct Attention",
        "Direct + KD",
        "Semi-direct + KD",
        "Direct + EWC",
        "Direct, top-8 heads",
        "Direct, layers 1–3",
    ]
    assert [r.key for r in config.variants][4:] == [
        "direct-kd",
        "semi-direct-kd",
        "direct-ewc",
        "direct-top-8-heads",
        "direct-layers-1-3",
    ]
    # methods is the shorthand of the paper's rows; neither given: all four.
    default = load_config(ExperimentConfig, None, [])
    quick = load_config(ExperimentConfig, CONFIGS / "experiment" / "quick.yaml")
    assert [(r.key, r.set) for r in default.variants] == [(r.key, r.set) for r in quick.variants]
    assert quick.variants[0].set == ["supervision.method=none"]
    with pytest.raises(ConfigError, match="rows or methods"):
        load_config(ExperimentConfig, None, ["methods=[none]", "rows=[{label: A}]"])
    with pytest.raises(ConfigError, match="share the name 'a'"):
        load_config(ExperimentConfig, None, ["rows=[{label: A}, {label: a}]"])
    with pytest.raises(ConfigError, match="rows.0.name"):
        load_config(ExperimentConfig, None, ["rows=[{label: A, name: A/B}]"])


def test_every_row_is_checked_before_any_stage(small_scenes, tmp_path):
    sets = [f"data_root={small_scenes}", "methods=null"]
    sets += ["rows=[{label: Bad, set: [supervision.method=attend]}]"]
    config = load_config(ExperimentConfig, CONFIGS / "experiment" / "tiny.yaml", sets)
    with pytest.raises(ConfigError, match="row 'Bad'.*supervision.method"):
        run_experiment(config, tmp_path / "experiment")
    assert not (tmp_path / "experiment" / "pretrain").exists()


def test_forgetting_rows_at_tiny_scale(small_scenes, tmp_path):
    sets = [f"data_root={small_scenes}", "visualize=false"]
    sets += [
        f"{task}={CONFIGS / task / 'tiny.yaml'}" for task in ("pretrain", "vgp", "vqa", "refcoco")
    ]
    sets += [f"overrides.{task}=[optim.max_steps=2]" for task in ("pretrain", "vqa", "refcoco")]
    sets += ["overrides.vgp=[optim.max_steps=2]"]
    # Phrase grounding joins as a downstream stage of every model (beyond the paper).
    sets += [
        f"phrase_grounding={CONFIGS / 'phrase_grounding' / 'tiny.yaml'}",
        "overrides.phrase_grounding=[optim.max_steps=2]",
    ]
    config = load_config(ExperimentConfig, CONFIGS / "experiment" / "forgetting.yaml", sets)
    chosen = {"none", "direct-kd", "direct-ewc"}
    rows = [
        r.model_copy(update={"set": [*r.set, "ewc.batches=2"]}) if r.key == "direct-ewc" else r
        for r in config.variants
        if r.key in chosen
    ]
    config = config.model_copy(update={"rows": rows})
    out = tmp_path / "experiment"
    records = run_experiment(config, out, announce=lambda _: None)
    assert [r["method"] for r in records] == [
        "chance",
        "original",
        "none",
        "direct-kd",
        "direct-ewc",
    ]
    kd = json.loads((out / "vgp" / "direct-kd" / "seed-0" / "stage.json").read_text())["config"]
    assert kd["distill"]["mlm_weight"] == 1.0 and kd["supervision"]["method"] == "direct"
    assert list((out / "pretrain" / "model").glob("fisher-*.safetensors"))  # EWC's anchor
    for record in records[1:]:
        assert 0.0 <= record["vqa_val"] <= 1.0 and 0.0 <= record["grounding_best"] <= 1.0
    for record in records:  # the chance row holds the uniform pick's Recall@k
        r1, r5 = record["phrase_grounding_test_r1"], record["phrase_grounding_test_r5"]
        assert 0.0 <= r1 <= r5 <= 1.0 and 0.0 <= record["phrase_grounding_val_r1"] <= 1.0
    assert 0.0 < records[0]["phrase_grounding_test_r1"] < records[0]["phrase_grounding_test_r5"]
    for model in ("original", "none", "direct-kd", "direct-ewc"):
        summary = out / "phrase-grounding" / model / "seed-0" / "summary.json"
        assert json.loads(summary.read_text())["steps"] == 2
    table = (out / "results.md").read_text()
    assert "Phrase grounding" in table and "test R@5" in table
    order = [table.index(f"| {label} |") for label in ("Original", "w/o Attention")]
    order += [table.index(f"| {label} |") for label in ("Direct + KD", "Direct + EWC")]
    assert order == sorted(order)
    assert "| Direct Attention |" not in table
