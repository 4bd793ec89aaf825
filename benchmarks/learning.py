"""Learning curves of every stage of the experiment on the embedded scenes.

    .venv/bin/python benchmarks/learning.py [--config configs/experiment/quick.yaml] [--out runs/experiment]
    .venv/bin/python benchmarks/learning.py --from runs/experiment      # curves of a finished experiment

Runs (or reuses, stage by stage) ``groundattn experiment`` and writes
``learning_curves.csv`` and ``learning_curves.png`` into its directory:
validation metric against optimizer steps for pretraining (MLM, MRC), VGP
(identification, classification, grounding), VQA and RefCOCO+, each with its
trivial baseline. Prints, per stage and model, the last validation beside its
baseline and the fraction of the way from the baseline to 100 % that it
covers (the issue's target: at least 0.5); then, where several seeds ran, each
model's paired difference to w/o Attention (``none``) at its last validation,
over the seeds both have, with a 95 % t-interval: what Table 1's differences
say, for an experiment whose stages are not all finished.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from groundattn.config import ExperimentConfig, load_config
from groundattn.errors import GroundattnError
from groundattn.eval.curves import collect, write_curves
from groundattn.eval.report import paired_difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/experiment/quick.yaml")
    parser.add_argument("--out", default="runs/experiment")
    parser.add_argument("--from", dest="existing", help="a finished experiment directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    out = Path(args.existing or args.out)
    if not args.existing:
        from groundattn.eval.experiment import run_experiment

        run_experiment(load_config(ExperimentConfig, args.config, args.set), out, announce=print)
    csv_path, png_path = write_curves(out)
    last: dict[tuple, object] = {}
    for p in collect(out):
        key = (p.stage, p.metric, p.model, p.seed)
        if key not in last or p.step >= last[key].step:
            last[key] = p
    print("| stage | metric | model | seed | step | value | baseline | way to 100 % |")
    print("|---|---|---|---|---|---|---|---|")
    for (stage, metric, model, seed), p in sorted(last.items(), key=lambda kv: str(kv[0])):
        way = (p.value - p.baseline) / (1 - p.baseline) if p.baseline is not None else float("nan")
        baseline = f"{100 * p.baseline:.1f}" if p.baseline is not None else "–"
        print(
            f"| {stage} | {metric} | {model} | {seed if seed is not None else '–'} | {p.step} "
            f"| {100 * p.value:.1f} | {baseline} | {way:.2f} |"
        )
    print_differences(last)
    print(f"wrote {csv_path} and {png_path}")


def print_differences(last: dict) -> None:
    """Each model's paired difference to ``none`` per (stage, metric), over their common seeds."""
    values: dict[tuple, dict[int, float]] = defaultdict(dict)
    for (stage, metric, model, seed), p in last.items():
        if seed is not None:
            values[stage, metric, model][seed] = 100 * p.value
    rows = []
    for (stage, metric, model), mine in sorted(values.items()):
        base = values.get((stage, metric, "none"), {})
        seeds = sorted(mine.keys() & base.keys())
        if model == "none" or len(seeds) < 2:
            continue
        d = paired_difference([mine[s] - base[s] for s in seeds])
        verdict = "" if d.excludes_zero else " (n.s.)"
        rows.append(
            f"| {stage} | {metric} | {model} | {seeds} "
            f"| {d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}]{verdict} |"
        )
    if rows:
        print(
            "\n| stage | metric | model | seeds | − none, points [95 % CI] |\n|---|---|---|---|---|"
        )
        print("\n".join(rows))


if __name__ == "__main__":
    try:
        main()
    except GroundattnError as error:  # a user's mistake: one line, as the command line prints it
        print(f"groundattn: error: {error}", file=sys.stderr)
        sys.exit(2)
