"""The experiment's report: a table laid out like the paper's Table 1, CSVs, a figure.

Table 1 has one row per model: "Chance / prior" (the trivial baseline of each
column, so a reader sees what was learned), the model before VGP fine-tuning
("Original") and the fine-tuned models, in the experiment's order and with its
labels (``labels``: record ``method`` → label; by default the paper's four
methods, then any other ``method`` of the records under its own name). Columns
are VQA and RefCOCO+ (detected and ground-truth boxes), phrase grounding
(Recall@1 and @5, when it was run; beyond the paper), then the attention
grounding accuracy and the VGP stage's own result (beyond the paper: its
classification accuracy, and the region spread of the last layer,
:func:`groundattn.supervision.token_spread`, a measurement rather than a
score). Cells are mean ± standard deviation over seeds (sample std, n−1; "±"
omitted for one seed).

Under it, a second table gives each model's paired difference to "w/o
Attention" (``none``): per seed d_s = metric(method, s) − metric(none, s), and
the mean of d_s with a 95 % t-interval, mean ± t_{0.975, n−1} · sd/√n. An
interval that contains 0 is marked "(n.s.)"; one seed gives no interval.

Bold in Table 1: the best fine-tuning method of a percent column (all of them on a
tie), if it is w/o Attention itself or its difference to w/o Attention has an
interval that excludes 0. Chance / prior and Original are never bold.

``results.csv`` holds one row per (method, seed) plus the chance row,
``differences.csv`` the paired differences (fractions, like the results).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from groundattn.config import PAPER_LABELS

CHANCE = "chance"
ORIGINAL = "original"
REFERENCE = "none"  # the paired differences are taken to w/o Attention
METHOD_LABELS = {CHANCE: "Chance / prior", ORIGINAL: "Original", **PAPER_LABELS}
NOT_FINE_TUNED = (CHANCE, ORIGINAL)  # never bold, left out of the "best" of a column
Labels = Mapping[str, str] | None  # record ``method`` → row label, in the report's order


@dataclass(frozen=True)
class Column:
    """A column of Table 1: its record key, group and label. ``percent``: a rate, shown in
    percent, scored (the best fine-tuning method can be bold) and drawn; otherwise a
    measurement shown as it is (three decimals), never bold, not drawn."""

    key: str
    group: str
    label: str
    percent: bool = True

    def text(self, value: float, sign: str = "") -> str:
        """``value`` as a cell shows it (``sign="+"``: with its sign, for differences)."""
        return f"{100 * value:{sign}.2f}" if self.percent else f"{value:{sign}.3f}"


COLUMNS = [
    Column("vqa_val", "VQAv2", "val"),
    Column("refcoco_detected_val", "RefCOCO+ (Detected)", "val"),
    Column("refcoco_detected_testA", "RefCOCO+ (Detected)", "testA"),
    Column("refcoco_detected_testB", "RefCOCO+ (Detected)", "testB"),
    Column("refcoco_ground_truth_val", "RefCOCO+ (Ground-truth)", "val"),
    Column("refcoco_ground_truth_testA", "RefCOCO+ (Ground-truth)", "testA"),
    Column("refcoco_ground_truth_testB", "RefCOCO+ (Ground-truth)", "testB"),
    Column("phrase_grounding_val_r1", "Phrase grounding", "val R@1"),
    Column("phrase_grounding_test_r1", "Phrase grounding", "test R@1"),
    Column("phrase_grounding_test_r5", "Phrase grounding", "test R@5"),
    Column("grounding_best", "Grounding accuracy", "best head"),
    Column("grounding_mean", "Grounding accuracy", "mean"),
    Column("rollout_best", "Grounding accuracy", "rollout"),
    Column("vgp_accuracy", "VGP", "classification"),
    Column("region_spread", "VGP", "region spread", percent=False),
]
BY_KEY = {c.key: c for c in COLUMNS}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    # scipy.stats.t.ppf calls this; scipy.special imports in a fraction of the time.
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.975))


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-seed differences with its 95 % t-interval (``None`` for one seed)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @property
    def excludes_zero(self) -> bool:
        """Whether an interval exists and 0 lies outside it."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def paired_difference(differences: Sequence[float]) -> PairedDifference:
    """Mean ± t_{0.975, n−1} · sd/√n of the per-seed differences."""
    n = len(differences)
    mean, sd = mean_std(differences)
    if n < 2:
        return PairedDifference(mean, None, None, n)
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    return PairedDifference(mean, mean - half, mean + half, n)


def row_labels(records: Sequence[dict], labels: Labels = None) -> dict[str, str]:
    """The report's rows in order, method → label: Chance / prior, Original, then ``labels``
    (by default the paper's methods, then any other method of the records, named as it is)."""
    rows = {CHANCE: METHOD_LABELS[CHANCE], ORIGINAL: METHOD_LABELS[ORIGINAL]}
    if labels is not None:
        rows.update(labels)
        return rows
    rows.update(METHOD_LABELS)
    for record in records:
        rows.setdefault(record["method"], record["method"])
    return rows


def aggregate(
    records: Sequence[dict], labels: Labels = None
) -> dict[str, dict[str, tuple[float, float, int]]]:
    """method → column → (mean, std, seeds), over the records that hold that column."""
    table: dict[str, dict[str, tuple[float, float, int]]] = {}
    for method in row_labels(records, labels):
        rows = [r for r in records if r["method"] == method]
        for key in BY_KEY:
            values = [float(r[key]) for r in rows if r.get(key) is not None]
            if values:
                table.setdefault(method, {})[key] = (*mean_std(values), len(values))
    return table


def paired_differences(
    records: Sequence[dict], labels: Labels = None
) -> dict[str, dict[str, PairedDifference]]:
    """method → column → difference to w/o Attention, paired over the seeds both hold."""
    reference = {r["seed"]: r for r in records if r["method"] == REFERENCE}
    table: dict[str, dict[str, PairedDifference]] = {}
    for method in row_labels(records, labels):
        if method in (CHANCE, REFERENCE):
            continue
        rows = [r for r in records if r["method"] == method]
        for key in BY_KEY:
            differences = [
                float(r[key]) - float(reference[r["seed"]][key])
                for r in rows
                if r.get(key) is not None and reference.get(r["seed"], {}).get(key) is not None
            ]
            if differences:
                table.setdefault(method, {})[key] = paired_difference(differences)
    return table


def _shown_columns(table: dict[str, dict]) -> list[str]:
    """Columns some model (not only the chance row) has a value for."""
    return [k for k in BY_KEY if any(k in c for m, c in table.items() if m != CHANCE)]


def _header(keys: Sequence[str], first: str) -> list[str]:
    return [
        f"| {first} | " + " | ".join(BY_KEY[k].group for k in keys) + " |",
        "| | " + " | ".join(BY_KEY[k].label for k in keys) + " |",
        "|---|" + "---|" * len(keys),
    ]


def bold_cells(records: Sequence[dict], labels: Labels = None) -> dict[str, set[str]]:
    """column → methods printed bold: best fine-tuning method, and w/o Attention or significant."""
    table = aggregate(records, labels)
    differences = paired_differences(records, labels)
    bold: dict[str, set[str]] = {}
    for key in (c.key for c in COLUMNS if c.percent):
        scored = {m: c[key][0] for m, c in table.items() if m not in NOT_FINE_TUNED and key in c}
        if not scored:
            continue
        top = max(scored.values())
        best = {m for m, v in scored.items() if v >= top - 1e-12}  # ties: all at the maximum
        bold[key] = {
            m
            for m in best
            if m == REFERENCE
            or (key in differences.get(m, {}) and differences[m][key].excludes_zero)
        }
    return bold


def markdown_table(records: Sequence[dict], labels: Labels = None) -> str:
    """Table 1 in Markdown, values in percent, with the sentence that explains it."""
    table = aggregate(records, labels)
    keys = _shown_columns(table)
    bold = bold_cells(records, labels)
    lines = _header(keys, "Fine-tuning method")
    for method, label in row_labels(records, labels).items():
        if method not in table:
            continue
        cells = []
        for key in keys:
            if key not in table[method]:
                cells.append("–")
                continue
            mean, std, n = table[method][key]
            column = BY_KEY[key]
            text = column.text(mean) + (f" ± {column.text(std)}" if n > 1 else "")
            cells.append(f"**{text}**" if method in bold.get(key, ()) else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in records if r["method"] != CHANCE})
    lines += [
        "",
        f"Mean ± std over seeds {seeds} (percent). Chance / prior: the trivial baseline of each"
        " column (VQA: the best constant answer on val; RefCOCO+: a uniform choice among the"
        " candidate regions; grounding: uniform attention over the sample's regions; VGP"
        " classification: the majority class). Region spread: how distinct a sample's"
        " candidate regions stay in the last layer (mean distance to their centroid over the"
        " centroid's norm), not a percent and never bold."
        " Bold: the best fine-tuning method of its column (all of them on a tie), if it is"
        " w/o Attention or its paired difference to w/o Attention has a 95 % interval that"
        " excludes 0 (table below); Chance / prior and Original are never bold.",
    ]
    return "\n".join(lines)


def _difference_cell(column: Column, difference: PairedDifference) -> str:
    text = column.text(difference.mean, "+")
    if difference.low is None or difference.high is None:
        return f"{text} (n = 1, no interval)"
    text += f" [{column.text(difference.low, '+')}, {column.text(difference.high, '+')}]"
    return text if difference.excludes_zero else f"{text} (n.s.)"


def differences_table(records: Sequence[dict], labels: Labels = None) -> str:
    """Each model's paired difference to w/o Attention in Markdown ("" without one)."""
    differences = paired_differences(records, labels)
    if not differences:
        return ""
    keys = _shown_columns(aggregate(records, labels))
    lines = [
        "Paired difference to w/o Attention, mean [95 % CI], percentage points (region spread:"
        " in its own unit)",
        "",
        *_header(keys, "Fine-tuning method"),
    ]
    for method, label in row_labels(records, labels).items():
        if method not in differences:
            continue
        cells = [
            _difference_cell(BY_KEY[key], differences[method][key])
            if key in differences[method]
            else "–"
            for key in keys
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per seed s, d_s = metric(method, s) − metric(w/o Attention, s), over the seeds both"
        " have; mean of d_s [95 % t-interval, mean ± t_{0.975, n−1} · sd/√n]. (n.s.): the"
        " interval contains 0, the difference is not significant at 95 %. With one seed no"
        " interval exists (n = 1).",
    ]
    return "\n".join(lines)


def write_csv(records: Sequence[dict], path: Path) -> Path:
    """One row per (method, seed) with every column, the chance row included (empty: no value)."""
    fields = ["method", "seed", *BY_KEY]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow(record)
    return path


def write_differences_csv(records: Sequence[dict], path: Path, labels: Labels = None) -> Path:
    """One row per (method, column): mean, low, high (empty for one seed), n; fractions."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "column", "mean", "low", "high", "n"])
        for method, columns in paired_differences(records, labels).items():
            for key, d in columns.items():
                writer.writerow([method, key, d.mean, d.low, d.high, d.n])
    return path


def results_figure(records: Sequence[dict], labels: Labels = None) -> Figure:
    """Grouped bars per column, one bar per method, error bars = std over seeds.

    The chance level of each column is a dashed black line across its group of bars.
    """
    table = aggregate(records, labels)
    keys = [k for k in _shown_columns(table) if BY_KEY[k].percent]
    names = row_labels(records, labels)
    methods = [m for m in names if m in table and m != CHANCE]
    fig = Figure(figsize=(max(6.0, 1.2 * len(keys)), 4.0), dpi=100)
    ax = fig.add_axes((0.07, 0.3, 0.9, 0.6))
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        xs = [k + (i - (len(methods) - 1) / 2) * width for k in range(len(keys))]
        means = [100 * table[method].get(key, (math.nan, 0, 0))[0] for key in keys]
        stds = [100 * table[method].get(key, (0, 0, 0))[1] for key in keys]
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=names[method])
    chance = table.get(CHANCE, {})
    at = [k for k, key in enumerate(keys) if key in chance]
    if at:
        ax.hlines(
            [100 * chance[keys[k]][0] for k in at],
            [k - 0.45 for k in at],
            [k + 0.45 for k in at],
            colors="black",
            linestyles="dashed",
            linewidth=1.2,
            zorder=3,
            label="chance / prior",
        )
    ax.set_xticks(
        range(len(keys)),
        [f"{BY_KEY[k].group}\n{BY_KEY[k].label}" for k in keys],
        rotation=30,
        ha="right",
        fontsize=7,
    )
    ax.set_ylabel("%")
    entries = len(methods) + bool(at)
    ax.legend(fontsize=7, ncols=min(entries, 6), loc="upper center", bbox_to_anchor=(0.5, 1.18))
    return fig
