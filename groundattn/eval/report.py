"""The experiment's report: a table laid out like the paper's Table 1, a CSV, a figure.

Rows are the model before VGP fine-tuning ("Original") and the four
fine-tuning methods; columns VQA and RefCOCO+ (detected and ground-truth
boxes), then the attention grounding accuracy (beyond the paper). Cells are
mean ± standard deviation over seeds (sample std, n−1; "±" omitted for one
seed); in each column the best fine-tuning method (all of them on a tie) is in bold.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

ORIGINAL = "original"
METHOD_LABELS = {
    ORIGINAL: "Original",
    "none": "w/o Attention",
    "indirect": "Indirect Attention",
    "direct": "Direct Attention",
    "semi-direct": "Semi-direct Attention",
}
# (key, group, column label)
COLUMNS = [
    ("vqa_val", "VQAv2", "val"),
    ("refcoco_detected_val", "RefCOCO+ (Detected)", "val"),
    ("refcoco_detected_testA", "RefCOCO+ (Detected)", "testA"),
    ("refcoco_detected_testB", "RefCOCO+ (Detected)", "testB"),
    ("refcoco_ground_truth_val", "RefCOCO+ (Ground-truth)", "val"),
    ("refcoco_ground_truth_testA", "RefCOCO+ (Ground-truth)", "testA"),
    ("refcoco_ground_truth_testB", "RefCOCO+ (Ground-truth)", "testB"),
    ("grounding_best", "Grounding accuracy", "best head"),
    ("grounding_mean", "Grounding accuracy", "mean"),
    ("rollout_best", "Grounding accuracy", "rollout"),
]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def aggregate(records: Sequence[dict]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """method → column → (mean, std, seeds), over the records that hold that column."""
    table: dict[str, dict[str, tuple[float, float, int]]] = {}
    for method in METHOD_LABELS:
        rows = [r for r in records if r["method"] == method]
        for key, _, _ in COLUMNS:
            values = [float(r[key]) for r in rows if r.get(key) is not None]
            if values:
                table.setdefault(method, {})[key] = (*mean_std(values), len(values))
    return table


def markdown_table(records: Sequence[dict]) -> str:
    """The Table-1 layout in Markdown, values in percent."""
    table = aggregate(records)
    keys = [k for k, _, _ in COLUMNS if any(k in cols for cols in table.values())]
    best: dict[str, set[str]] = {}  # ties: every method at the maximum
    for key in keys:
        scored = {m: cols[key][0] for m, cols in table.items() if m != ORIGINAL and key in cols}
        if scored:
            top = max(scored.values())
            best[key] = {m for m, v in scored.items() if v >= top - 1e-12}
    groups = {k: g for k, g, _ in COLUMNS}
    labels = {k: c for k, _, c in COLUMNS}
    header1 = "| Fine-tuning method | " + " | ".join(groups[k] for k in keys) + " |"
    header2 = "| | " + " | ".join(labels[k] for k in keys) + " |"
    lines = [header1, header2, "|---|" + "---|" * len(keys)]
    for method, label in METHOD_LABELS.items():
        if method not in table:
            continue
        cells = []
        for key in keys:
            if key not in table[method]:
                cells.append("–")
                continue
            mean, std, n = table[method][key]
            text = f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if n > 1 else "")
            cells.append(f"**{text}**" if method in best.get(key, ()) else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in records})
    lines.append("")
    lines.append(
        f"Mean ± std over seeds {seeds} (percent); bold: best fine-tuning method per column."
    )
    return "\n".join(lines)


def write_csv(records: Sequence[dict], path: Path) -> Path:
    """One row per (method, seed) with every column."""
    fields = ["method", "seed", *[k for k, _, _ in COLUMNS]]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow(record)
    return path


def results_figure(records: Sequence[dict]) -> Figure:
    """Grouped bars per column, one bar per method, error bars = std over seeds."""
    table = aggregate(records)
    keys = [k for k, _, _ in COLUMNS if any(k in cols for cols in table.values())]
    methods = [m for m in METHOD_LABELS if m in table]
    fig = Figure(figsize=(max(6.0, 1.2 * len(keys)), 4.0), dpi=100)
    ax = fig.add_axes((0.07, 0.3, 0.9, 0.6))
    width = 0.8 / max(len(methods), 1)
    for i, method in enumerate(methods):
        xs = [k + (i - (len(methods) - 1) / 2) * width for k in range(len(keys))]
        means = [100 * table[method].get(key, (math.nan, 0, 0))[0] for key in keys]
        stds = [100 * table[method].get(key, (0, 0, 0))[1] for key in keys]
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=METHOD_LABELS[method])
    labels = {k: f"{g}\n{c}" for k, g, c in COLUMNS}
    ax.set_xticks(range(len(keys)), [labels[k] for k in keys], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("%")
    ax.legend(
        fontsize=7, ncols=min(len(methods), 5), loc="upper center", bbox_to_anchor=(0.5, 1.18)
    )
    return fig
