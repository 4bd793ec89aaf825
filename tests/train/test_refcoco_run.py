from pathlib import Path

import pytest

from groundattn.config import ConfigError, RefCOCOConfig, load_config
from groundattn.eval.saved import evaluate
from groundattn.train.refcoco import RefCOCORecipe
from groundattn.train.run import run

CONFIGS = Path(__file__).parents[2] / "configs"
TINY = CONFIGS / "refcoco" / "tiny.yaml"


def _config(root, *extra):
    return load_config(RefCOCOConfig, TINY, [f"data.root={root}", *extra])


@pytest.mark.parametrize("boxes", ["ground_truth", "detected"])
def test_tiny_run_from_the_pretrained_model(small_scenes, pretrained, tmp_path, boxes):
    out = tmp_path / boxes
    summary = run(
        RefCOCORecipe(
            _config(
                small_scenes, f"model.init={pretrained}", f"data.boxes={boxes}", "optim.max_steps=2"
            )
        ),
        out,
    )
    assert summary["task"] == "refcoco" and summary["boxes"] == boxes and summary["steps"] == 2
    assert list(summary["splits"]) == ["val", "testA", "testB"]
    for split, metrics in summary["splits"].items():
        assert (
            0 <= metrics["accuracy"] <= metrics["answerable"] <= 1 and metrics["sentences"] > 0
        ), split
        if boxes == "ground_truth":
            assert metrics["answerable"] == 1.0
    assert summary["splits"]["val"] == summary["after"]
    again = evaluate(out / "model", split="testB", task="refcoco")
    assert again["accuracy"] == pytest.approx(summary["splits"]["testB"]["accuracy"])
    assert again["answerable"] == pytest.approx(summary["splits"]["testB"]["answerable"])


def test_evaluation_with_other_boxes_and_bad_splits(small_scenes, tmp_path):
    out = tmp_path / "run"
    run(RefCOCORecipe(_config(small_scenes, "optim.max_steps=1")), out)
    metrics = evaluate(
        out / "model", split="testA", overrides=["data.boxes=ground_truth"], task="refcoco"
    )
    assert metrics["answerable"] == 1.0 and metrics["split"] == "testA"
    with pytest.raises(ConfigError, match="no refs of split 'testC'"):
        evaluate(out / "model", split="testC", task="refcoco")
    with pytest.raises(ConfigError, match="data.boxes"):
        _config(small_scenes, "data.boxes=all")


def test_test_splits_capped_only_where_asked(small_scenes, tmp_path):
    summary = run(
        RefCOCORecipe(_config(small_scenes, "optim.max_steps=1", "data.max_test_sentences=3")),
        tmp_path / "run",
    )
    assert [summary["splits"][s]["sentences"] for s in ("testA", "testB")] == [3, 3]
    whole = evaluate(tmp_path / "run" / "model", split="testA", task="refcoco")
    assert whole["sentences"] > 3  # evaluate reads the whole split
