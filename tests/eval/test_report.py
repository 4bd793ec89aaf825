import csv

import pytest

from groundattn.eval.report import markdown_table, mean_std, results_figure, write_csv


def _records():
    rows = []
    for seed, (a, b) in enumerate([(0.50, 0.60), (0.54, 0.64)]):
        rows.append({"method": "original", "seed": seed, "vqa_val": 0.40, "grounding_best": 0.2})
        rows.append({"method": "none", "seed": seed, "vqa_val": a, "grounding_best": 0.3})
        rows.append({"method": "direct", "seed": seed, "vqa_val": b, "grounding_best": 0.9})
    return rows


def test_mean_std_by_hand():
    assert mean_std([0.5, 0.54]) == pytest.approx((0.52, 0.028284271), rel=1e-6)  # sqrt(2·0.02²/1)
    assert mean_std([0.3]) == (0.3, 0.0)


def test_table_marks_best_method_not_original():
    text = markdown_table(_records())
    lines = text.splitlines()
    assert lines[0].startswith("| Fine-tuning method | VQAv2")
    original = next(line for line in lines if line.startswith("| Original"))
    direct = next(line for line in lines if line.startswith("| Direct Attention"))
    none = next(line for line in lines if line.startswith("| w/o Attention"))
    assert "**62.00 ± 2.83**" in direct and "**90.00 ± 0.00**" in direct
    assert "**" not in none and "**" not in original
    assert "40.00 ± 0.00" in original
    assert "Indirect" not in text  # methods without results are left out


def test_csv_and_figure(tmp_path):
    path = write_csv(_records(), tmp_path / "results.csv")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and rows[1]["method"] == "none" and float(rows[1]["vqa_val"]) == 0.5
    fig = results_figure(_records())
    assert len(fig.axes[0].patches) == 3 * 2  # 3 methods × 2 columns


def test_ties_are_all_marked():
    rows = [{"method": m, "seed": 0, "vqa_val": 0.5} for m in ("none", "direct")]
    lines = markdown_table(rows).splitlines()
    assert all("**50.00**" in line for line in lines if line.startswith(("| w/o", "| Direct")))
