"""Tests of groundattn/eval/curves.py: learning curves gathered from an experiment's stages."""

import csv
import json

import pytest

from groundattn.eval.curves import collect, write_curves


def _summary(path, history):
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"history": history}))


@pytest.fixture
def experiment(tmp_path):
    _summary(
        tmp_path / "pretrain",
        [
            {"step": 0, "mlm_accuracy": 0.0, "mlm_accuracy_baseline": 0.1},
            {"step": 20, "mlm_accuracy": 0.4, "mlm_accuracy_baseline": 0.1},
        ],
    )
    for method, value in (("none", 0.3), ("direct", 0.6)):
        _summary(
            tmp_path / "vgp" / method / "seed-0",
            [
                {"step": 0, "grounding_mean": 0.2, "grounding_baseline": 0.25},
                {"step": 30, "grounding_mean": value, "grounding_baseline": 0.25},
            ],
        )
    _summary(tmp_path / "vqa" / "original" / "seed-1", [{"step": 10, "accuracy": 0.5}])
    return tmp_path


def test_collect_reads_every_stage_with_its_baseline(experiment):
    points = collect(experiment)
    mlm = [p for p in points if p.metric == "mlm_accuracy"]
    assert [(p.step, p.value, p.baseline) for p in mlm] == [(0, 0.0, 0.1), (20, 0.4, 0.1)]
    direct = [p for p in points if p.stage == "vgp" and p.model == "direct"]
    assert [(p.seed, p.step, p.value) for p in direct] == [(0, 0, 0.2), (0, 30, 0.6)]
    vqa = [p for p in points if p.stage == "vqa"]
    assert [(p.model, p.seed, p.baseline) for p in vqa] == [("original", 1, None)]


def test_write_curves_writes_the_csv_and_the_figure(experiment, tmp_path):
    csv_path, png_path = write_curves(experiment, tmp_path / "out")
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7 and rows[0]["stage"] == "pretrain"
    assert png_path.stat().st_size > 10_000


def test_an_experiment_without_history_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished stage"):
        write_curves(tmp_path)


def test_a_missing_experiment_is_an_error_and_nothing_is_created(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such experiment directory"):
        write_curves(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "missing").exists() and not (tmp_path / "out").exists()
