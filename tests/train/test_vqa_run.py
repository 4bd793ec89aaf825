import json
from pathlib import Path

import pytest

from groundattn.config import ConfigError, VQAConfig, load_config
from groundattn.data.vqa import evaluate as vqa_accuracy
from groundattn.data.vqa import load_vqa, read_results
from groundattn.eval.saved import evaluate
from groundattn.train.run import run
from groundattn.train.vqa import VQARecipe

CONFIGS = Path(__file__).parents[2] / "configs"
TINY = CONFIGS / "vqa" / "tiny.yaml"


def _config(root, *extra):
    return load_config(VQAConfig, TINY, [f"data.root={root}", *extra])


def test_tiny_run_from_the_pretrained_model(small_scenes, pretrained, tmp_path):
    out = tmp_path / "run"
    summary = run(
        VQARecipe(
            _config(
                small_scenes,
                f"model.init={pretrained}",
                "optim.max_steps=3",
                "data.predict_splits=[val,test]",
            )
        ),
        out,
    )
    assert summary["task"] == "vqa" and summary["steps"] == 3 and summary["regions"] == "detected"
    after = summary["after"]
    assert set(after) >= {
        "accuracy",
        "accuracy_yes_no",
        "accuracy_number",
        "accuracy_other",
        "questions",
        "val_loss",
    }
    assert after["questions"] == 30
    answers = json.loads((out / "answers.json").read_text())
    assert (
        len(answers) == summary["answers"]
        and json.loads((out / "model" / "answers.json").read_text()) == answers
    )
    for split in ("val", "test"):
        entries = json.loads((out / f"predictions_{split}.json").read_text())
        assert (
            entries
            and set(entries[0]) == {"question_id", "answer"}
            and {e["answer"] for e in entries} <= set(answers)
        )
    # The official evaluation of the file equals the counted validation accuracy.
    val = load_vqa(
        small_scenes / "vqa" / "v2_OpenEnded_val_questions.json",
        small_scenes / "vqa" / "v2_val_annotations.json",
    )
    official = vqa_accuracy(read_results(out / "predictions_val.json"), [e.annotation for e in val])
    assert official["overall"] == pytest.approx(after["accuracy"], abs=1e-12)
    assert summary["predictions"]["val"]["official"] == pytest.approx(official)

    metrics = evaluate(out / "model", split="val", out_dir=tmp_path / "eval", task="vqa")
    assert metrics["accuracy"] == pytest.approx(after["accuracy"], abs=1e-12)
    assert read_results(tmp_path / "eval" / "predictions_val.json") == read_results(
        out / "predictions_val.json"
    )


def test_bad_configs_stop_before_any_work(small_scenes, tmp_path):
    with pytest.raises(ConfigError, match="data.regions"):
        _config(small_scenes, "data.regions=grid")
    with pytest.raises(ConfigError, match="data.questions"):
        run(VQARecipe(_config(small_scenes, "data.val_split=dev")), tmp_path / "a")
    with pytest.raises(ConfigError, match="data.min_answer_count"):
        run(VQARecipe(_config(small_scenes, "data.min_answer_count=100000")), tmp_path / "b")
    assert (
        not (tmp_path / "a" / "checkpoints").exists()
        and not (tmp_path / "b" / "checkpoints").exists()
    )
