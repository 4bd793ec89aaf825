"""Learning curves of an experiment: validation metric against steps, for every stage.

Every run keeps its validations in ``summary.json`` (``history``: the one before
training at step 0, the periodic ones of ``run.eval_every``, the last one).
This module gathers them for each stage of an experiment directory, next to
each metric's trivial baseline (the ``*_baseline`` keys of the same
validation), into one CSV and one figure: a panel per (task, metric), a line
per model, the baseline dashed.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from groundattn.errors import MissingFileError

# (stage folder, metric, baseline key, panel title)
PANELS = [
    ("pretrain", "mlm_accuracy", "mlm_accuracy_baseline", "Pretraining: MLM accuracy"),
    ("pretrain", "mrc_accuracy", "mrc_accuracy_baseline", "Pretraining: MRC accuracy"),
    ("vgp", "id_accuracy", "id_accuracy_baseline", "VGP: description identification"),
    ("vgp", "vgp_accuracy", "vgp_accuracy_baseline", "VGP: phrase-pair classification"),
    ("vgp", "grounding_best", "grounding_baseline", "VGP: grounding accuracy, best head"),
    ("vgp", "grounding_mean", "grounding_baseline", "VGP: grounding accuracy, mean over heads"),
    ("vqa", "accuracy", "accuracy_baseline", "VQA: accuracy (val)"),
    ("refcoco-detected", "accuracy", "accuracy_baseline", "RefCOCO+ detected boxes (val)"),
    ("refcoco-ground_truth", "accuracy", "accuracy_baseline", "RefCOCO+ ground-truth boxes (val)"),
    ("phrase-grounding", "recall_at_1", "recall_at_1_baseline", "Phrase grounding: Recall@1 (val)"),
]
FIELDS = ["stage", "model", "seed", "metric", "step", "value", "baseline"]


@dataclass(frozen=True)
class Point:
    stage: str
    model: str
    seed: int | None
    metric: str
    step: int
    value: float
    baseline: float | None


def _runs(experiment: Path, stage: str) -> Iterator[tuple[str, int | None, dict]]:
    """(model, seed, summary) of every finished run of one stage."""
    if stage == "pretrain":
        file = experiment / "pretrain" / "summary.json"
        if file.is_file():
            yield "original", None, json.loads(file.read_text())
        return
    for file in sorted((experiment / stage).glob("*/seed-*/summary.json")):
        seed = int(file.parent.name.removeprefix("seed-"))
        yield file.parent.parent.name, seed, json.loads(file.read_text())


def collect(experiment: str | Path) -> list[Point]:
    """Every validation of every stage of ``experiment`` as points of the panels' metrics."""
    experiment = Path(experiment)
    points = []
    for stage, metric, baseline, _ in PANELS:
        for model, seed, summary in _runs(experiment, stage):
            for record in summary.get("history", []):
                if metric in record:
                    points.append(
                        Point(
                            stage,
                            model,
                            seed,
                            metric,
                            int(record["step"]),
                            float(record[metric]),
                            float(record[baseline]) if baseline in record else None,
                        )
                    )
    return points


def write_csv(points: list[Point], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FIELDS)
        for p in points:
            writer.writerow([getattr(p, name) for name in FIELDS])
    return path


def curves_figure(points: list[Point]) -> Figure:
    """One panel per (stage, metric) with points, a line per (model, seed), baselines dashed."""
    panels = [
        (stage, metric, title)
        for stage, metric, _, title in PANELS
        if any(p.stage == stage and p.metric == metric for p in points)
    ]
    cols = 3
    rows = max(1, -(-len(panels) // cols))
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (stage, metric, title) in zip(axes.flat, panels, strict=False):
        mine = [p for p in points if p.stage == stage and p.metric == metric]
        for model, seed in sorted({(p.model, p.seed or 0) for p in mine}):
            line = sorted(
                (p for p in mine if p.model == model and (p.seed or 0) == seed),
                key=lambda p: p.step,
            )
            label = model if seed == 0 else f"{model} (seed {seed})"
            ax.plot([p.step for p in line], [100 * p.value for p in line], "o-", ms=3, label=label)
        baselines = [p.baseline for p in mine if p.baseline is not None]
        if baselines:
            level = 100 * sum(baselines) / len(baselines)
            ax.axhline(level, color="black", ls="--", lw=1, label=f"baseline {level:.1f}")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.set_ylabel("%", fontsize=8)
        ax.set_ylim(0, 100)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    return fig


def write_curves(experiment: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """``learning_curves.csv`` and ``learning_curves.png`` of an experiment directory."""
    experiment = Path(experiment)
    out = Path(out) if out is not None else experiment
    if not experiment.is_dir():
        raise MissingFileError(f"{experiment}: no such experiment directory")
    points = collect(experiment)
    if not points:
        raise MissingFileError(f"{experiment}: no finished stage with a validation history")
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(points, out / "learning_curves.csv")
    png_path = out / "learning_curves.png"
    curves_figure(points).savefig(png_path, dpi=110)
    return csv_path, png_path
