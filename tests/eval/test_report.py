import csv

import pytest

from groundattn.eval.report import (
    bold_cells,
    differences_table,
    markdown_table,
    mean_std,
    paired_difference,
    paired_differences,
    results_figure,
    t_quantile_975,
    write_csv,
    write_differences_csv,
)


def _rows(method, **columns):
    """One record per seed, column → values over seeds 0, 1, ..."""
    n = len(next(iter(columns.values())))
    return [
        {"method": method, "seed": s, **{k: v[s] for k, v in columns.items()}} for s in range(n)
    ]


def _records():
    # VQA: direct is best but its differences to none (1, 2, 3 points) give an interval
    # containing 0; grounding: direct is best and clearly better; RefCOCO: none is best.
    chance = {"method": "chance", "seed": 0, "vqa_val": 0.25, "grounding_best": 0.1}
    chance["refcoco_detected_val"] = 0.99  # above every method: still never bold nor "best"
    return [
        chance,
        *_rows(
            "original", vqa_val=[0.40] * 3, grounding_best=[0.2] * 3, refcoco_detected_val=[0.3] * 3
        ),
        *_rows(
            "none",
            vqa_val=[0.50, 0.40, 0.60],
            grounding_best=[0.30, 0.30, 0.30],
            refcoco_detected_val=[0.70, 0.70, 0.70],
        ),
        *_rows(
            "direct",
            vqa_val=[0.51, 0.42, 0.63],
            grounding_best=[0.90, 0.91, 0.92],
            refcoco_detected_val=[0.60, 0.60, 0.60],
        ),
    ]


def _line(text, label):
    return next(line for line in text.splitlines() if line.startswith(f"| {label} |"))


def test_mean_std_by_hand():
    assert mean_std([0.5, 0.54]) == pytest.approx((0.52, 0.028284271), rel=1e-6)  # sqrt(2·0.02²/1)
    assert mean_std([0.3]) == (0.3, 0.0)


def test_paired_interval_by_hand():
    # mean 2, sd 1, t_{0.975,2} = 4.302653: 2 ± 4.302653/√3 = 2 ± 2.484138
    d = paired_difference([1.0, 2.0, 3.0])
    assert (d.mean, d.n) == (pytest.approx(2.0), 3)
    assert (d.low, d.high) == (
        pytest.approx(-0.484138, abs=1e-6),
        pytest.approx(4.484138, abs=1e-6),
    )
    assert not d.excludes_zero
    assert paired_difference([3.0, 4.0, 5.0]).excludes_zero  # 4 ± 2.48
    assert paired_difference([-3.0, -4.0, -5.0]).excludes_zero
    single = paired_difference([2.0])
    assert (single.mean, single.low, single.high, single.n) == (2.0, None, None, 1)
    assert not single.excludes_zero


def test_t_quantiles_by_table():
    # Student's t, 0.975 quantiles from a printed table.
    assert t_quantile_975(1) == pytest.approx(12.706205, abs=1e-6)
    assert t_quantile_975(2) == pytest.approx(4.302653, abs=1e-6)
    assert t_quantile_975(30) == pytest.approx(2.042272, abs=1e-6)


def test_differences_are_paired_by_seed():
    d = paired_differences(_records())
    vqa = d["direct"]["vqa_val"]  # per seed 1, 2, 3 points; unpaired, the sd would be ~10
    assert (vqa.mean, vqa.n) == (pytest.approx(0.02), 3)
    assert vqa.low == pytest.approx(-0.00484138, abs=1e-8)
    assert vqa.high == pytest.approx(0.04484138, abs=1e-8)
    assert "none" not in d and "chance" not in d
    assert d["original"]["vqa_val"].mean == pytest.approx(-0.10)


def test_differences_table_marks_not_significant():
    text = differences_table(_records())
    assert text.startswith("Paired difference to w/o Attention, mean [95 % CI], percentage points")
    direct = _line(text, "Direct Attention")
    assert "+2.00 [-0.48, +4.48] (n.s.)" in direct
    assert "+61.00 [+58.52, +63.48] |" in direct  # grounding: 60, 61, 62 points
    assert "-10.00 [-10.00, -10.00] |" in direct  # sd 0: the interval is the point
    assert "w/o Attention |" not in text.split("|---|")[1]  # no row for the reference
    assert "(n.s.): the interval contains 0" in text


def test_single_seed_has_no_interval():
    rows = [{"method": m, "seed": 0, "vqa_val": v} for m, v in (("none", 0.5), ("direct", 0.6))]
    assert "+10.00 (n = 1, no interval)" in _line(differences_table(rows), "Direct Attention")
    assert differences_table([{"method": "direct", "seed": 0, "vqa_val": 0.6}]) == ""


def test_bold_needs_best_and_an_interval_excluding_zero():
    bold = bold_cells(_records())
    assert bold["vqa_val"] == set()  # direct is best, but its interval contains 0
    assert bold["grounding_best"] == {"direct"}
    assert bold["refcoco_detected_val"] == {"none"}  # the reference needs no interval
    text = markdown_table(_records())
    assert "**" not in _line(text, "Direct Attention").split("|")[2]  # VQA cell
    assert "**91.00 ± 1.00**" in _line(text, "Direct Attention")
    assert "**70.00 ± 0.00**" in _line(text, "w/o Attention")
    assert "**" not in _line(text, "Original")
    assert "95 % interval that excludes 0" in text


def test_chance_row_first_and_never_bold():
    lines = markdown_table(_records()).splitlines()
    assert lines[0].startswith("| Fine-tuning method | VQAv2")
    assert lines[3] == "| Chance / prior | 25.00 | 99.00 | 10.00 |"
    assert "seeds [0, 1, 2]" in lines[-1]


def test_ties_are_all_marked():
    seeds = [0.60, 0.61, 0.62]
    rows = [
        *_rows("none", vqa_val=[0.5] * 3),
        *_rows("direct", vqa_val=seeds),
        *_rows("indirect", vqa_val=seeds[::-1]),
    ]
    lines = markdown_table(rows).splitlines()
    assert all("**61.00 ± 1.00**" in line for line in lines if line.startswith(("| Dir", "| Ind")))
    # A tie with the reference: the others' difference is 0, not significant.
    rows = _rows("none", vqa_val=[0.5, 0.6]) + _rows("direct", vqa_val=[0.6, 0.5])
    assert bold_cells(rows)["vqa_val"] == {"none"}


def test_csvs_keep_every_seed_and_the_chance_row(tmp_path):
    with open(write_csv(_records(), tmp_path / "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["seed"]) for r in rows[:3]] == [
        ("chance", "0"),
        ("original", "0"),
        ("original", "1"),
    ]
    assert len(rows) == 1 + 3 * 3
    assert rows[0]["grounding_mean"] == "" and float(rows[0]["vqa_val"]) == 0.25
    none = [float(r["vqa_val"]) for r in rows if r["method"] == "none"]
    assert none == [0.50, 0.40, 0.60]
    with open(write_differences_csv(_records(), tmp_path / "differences.csv")) as f:
        reader = csv.DictReader(f)
        rows = {(r["method"], r["column"]): r for r in reader}
    assert reader.fieldnames == ["method", "column", "mean", "low", "high", "n"]
    assert len(rows) == 2 * 3  # original and direct × 3 columns
    vqa = rows[("direct", "vqa_val")]
    assert float(vqa["mean"]) == pytest.approx(0.02) and vqa["n"] == "3"
    assert float(vqa["low"]) == pytest.approx(-0.00484138, abs=1e-8)
    assert float(vqa["high"]) == pytest.approx(0.04484138, abs=1e-8)
    single = [{"method": m, "seed": 0, "vqa_val": v} for m, v in (("none", 0.5), ("direct", 0.6))]
    with open(write_differences_csv(single, tmp_path / "single.csv")) as f:
        (row,) = csv.DictReader(f)
    assert (row["low"], row["high"], row["n"]) == ("", "", "1")


def test_figure_draws_chance_as_dashed_line():
    fig = results_figure(_records())
    ax = fig.axes[0]
    assert len(ax.patches) == 3 * 3  # original, none, direct × 3 columns; chance is no bar
    (chance,) = [c for c in ax.collections if c.get_label() == "chance / prior"]
    assert len(chance.get_segments()) == 3
    assert tuple(chance.get_colors()[0]) == (0.0, 0.0, 0.0, 1.0)
    assert chance.get_linestyle()[0][1] is not None  # dashed, not solid
    assert "chance / prior" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_rows_are_ordered_and_labelled_by_the_caller():
    records = _records() + _rows("direct-kd", vqa_val=[0.55, 0.45, 0.65])
    labels = {"direct-kd": "Direct + KD", "none": "w/o Attention", "direct": "Direct Attention"}
    table = markdown_table(records, labels)
    rows = [line.split(" | ")[0][2:] for line in table.splitlines() if line.startswith("| ")]
    assert rows[2:] == [
        "Chance / prior",
        "Original",
        "Direct + KD",
        "w/o Attention",
        "Direct Attention",
    ]
    assert "| Direct + KD |" in differences_table(records, labels)
    # Without labels: the paper's methods first, then any other row under its own name.
    default = [line.split(" | ")[0][2:] for line in markdown_table(records).splitlines()]
    assert default.index("direct-kd") > default.index("Direct Attention")
    figure = results_figure(records, labels)
    assert "Direct + KD" in [t.get_text() for t in figure.axes[0].get_legend().get_texts()]


def test_a_measurement_column_is_shown_as_it_is_and_never_bold(tmp_path):
    # Region spread is no percent: three decimals, its difference in its own unit, no bold
    # (direct is its best and clearly different), not drawn; VGP classification is a percent.
    records = [
        {"method": "chance", "seed": 0, "vgp_accuracy": 0.25},
        *_rows("original", region_spread=[0.34] * 3),
        *_rows("none", region_spread=[0.30, 0.32, 0.34], vgp_accuracy=[0.40, 0.41, 0.42]),
        *_rows("direct", region_spread=[0.50, 0.52, 0.54], vgp_accuracy=[0.30, 0.31, 0.32]),
    ]
    table = markdown_table(records)
    assert "| VGP | VGP |" in table and "| classification | region spread |" in table
    assert _line(table, "Chance / prior") == "| Chance / prior | 25.00 | – |"
    assert _line(table, "Direct Attention") == "| Direct Attention | 31.00 ± 1.00 | 0.520 ± 0.020 |"
    assert _line(table, "w/o Attention") == "| w/o Attention | **41.00 ± 1.00** | 0.320 ± 0.020 |"
    assert "region_spread" not in bold_cells(records)
    assert "+0.200 [+0.200, +0.200]" in _line(differences_table(records), "Direct Attention")
    ticks = [t.get_text() for t in results_figure(records).axes[0].get_xticklabels()]
    assert ticks == ["VGP\nclassification"]
