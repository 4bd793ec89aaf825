from pathlib import Path

import pytest

from groundattn.config import ConfigError, PhraseGroundingConfig, load_config
from groundattn.errors import MissingFileError
from groundattn.eval.saved import evaluate
from groundattn.train.phrase_grounding import PhraseGroundingRecipe
from groundattn.train.run import run

CONFIGS = Path(__file__).parents[2] / "configs"
TINY = CONFIGS / "phrase_grounding" / "tiny.yaml"
METRICS = ("recall_at_1", "recall_at_1_baseline", "recall_at_5", "recall_at_5_baseline")
EXCLUDED = ("phrases_not_visual", "phrases_no_box", "phrases_cut_off")


def _config(root, *extra):
    return load_config(PhraseGroundingConfig, TINY, [f"data.root={root}", *extra])


@pytest.mark.parametrize("boxes", ["ground_truth", "detected"])
def test_tiny_run_from_the_pretrained_model(small_scenes, pretrained, tmp_path, boxes):
    out = tmp_path / boxes
    summary = run(
        PhraseGroundingRecipe(
            _config(
                small_scenes, f"model.init={pretrained}", f"data.boxes={boxes}", "optim.max_steps=2"
            )
        ),
        out,
    )
    assert summary["task"] == "phrase-grounding" and summary["boxes"] == boxes
    assert summary["steps"] == 2 and list(summary["splits"]) == ["val", "test"]
    for split, metrics in summary["splits"].items():
        assert metrics["phrases"] > 0, split
        assert 0 <= metrics["recall_at_1"] <= metrics["recall_at_5"] <= metrics["answerable"] <= 1
        assert 0 < metrics["recall_at_1_baseline"] <= metrics["recall_at_5_baseline"] <= 1
        assert metrics["phrases_no_box"] > 0  # the scenes' "the frame", "the dark backdrop"
        assert set(EXCLUDED) <= set(metrics), split
        if boxes == "ground_truth":
            assert metrics["answerable"] == 1.0 and metrics["unanswerable_phrases"] == 0
    after = summary["splits"]["val"]
    assert {k: after[k] for k in summary["after"]} == summary["after"]
    again = evaluate(out / "model", split="test", task="phrase-grounding")
    for key in (*METRICS, "answerable", "phrases", *EXCLUDED):
        assert again[key] == pytest.approx(summary["splits"]["test"][key]), key


def test_evaluation_with_other_boxes_and_bad_splits(small_scenes, tmp_path):
    out = tmp_path / "run"
    run(
        PhraseGroundingRecipe(_config(small_scenes, "optim.max_steps=1", "data.test_splits=[]")),
        out,
    )
    metrics = evaluate(
        out / "model", split="test", overrides=["data.boxes=ground_truth"], task="phrase-grounding"
    )
    assert metrics["answerable"] == 1.0 and metrics["split"] == "test"
    with pytest.raises(MissingFileError, match="no split file testC.txt"):
        evaluate(out / "model", split="testC", task="phrase-grounding")
    with pytest.raises(ConfigError, match="data.boxes"):
        _config(small_scenes, "data.boxes=all")
    with pytest.raises(ConfigError, match="data.test_splits: .*testC.txt does not exist"):
        run(
            PhraseGroundingRecipe(_config(small_scenes, "data.test_splits=[testC]")),
            tmp_path / "bad",
        )


def test_capped_validation_and_test(small_scenes, tmp_path):
    summary = run(
        PhraseGroundingRecipe(
            _config(
                small_scenes,
                "optim.max_steps=1",
                "data.max_val_phrases=5",
                "data.max_test_phrases=3",
            )
        ),
        tmp_path / "run",
    )
    assert [summary["splits"][s]["phrases"] for s in ("val", "test")] == [5, 3]
    whole = evaluate(tmp_path / "run" / "model", split="test", task="phrase-grounding")
    assert whole["phrases"] > 3  # evaluate reads the whole split
