"""λ, the weight of the attention loss (Eq. 9): grounding against VGP classification.

    .venv/bin/python benchmarks/supervision_weight.py --init runs/experiment/pretrain/model \
        [--weights 0.1 0.3 1] [--methods direct semi-direct] [--set optim.max_steps=80 ...]

Fine-tunes VGP from ``--init`` once per (method, λ) with the configuration of
``configs/vgp/default.yaml`` and the overrides given (by default those of the
quick experiment preset), each run under ``--out``, and prints one table: the
validation grounding accuracy (mean over heads, best head, rollout) beside the
VGP classification and identification accuracy, with their baselines.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from groundattn.config import VGPConfig, load_config
from groundattn.train.run import run
from groundattn.train.vgp import VGPRecipe

QUICK = ["optim.max_steps=80", "optim.batch_size=16", "data.max_val_images=40"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="the model VGP starts from (Original)")
    parser.add_argument("--data", default="data/scenes")
    parser.add_argument("--out", default="runs/supervision-weight")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    parser.add_argument("--methods", nargs="+", default=["direct", "semi-direct"])
    parser.add_argument("--set", action="append", default=None, metavar="KEY=VALUE")
    args = parser.parse_args()
    sets = args.set if args.set is not None else QUICK
    rows = []
    for method in args.methods:
        for weight in args.weights:
            config = load_config(
                VGPConfig,
                "configs/vgp/default.yaml",
                [
                    f"data.root={args.data}",
                    f"model.init={args.init}",
                    f"supervision.method={method}",
                    f"supervision.weight={weight}",
                    *sets,
                ],
            )
            out = Path(args.out) / f"{method}-{weight:g}"
            summary = run(VGPRecipe(config), out, resume=(out / "checkpoints").is_dir())
            rows.append((method, weight, summary["before"], summary["after"]))
    print("| method | λ | grounding mean | best head | rollout | VGP class. | identification |")
    print("|---|---|---|---|---|---|---|")
    for method, weight, _, after in rows:
        print(
            f"| {method} | {weight:g} | {100 * after['grounding_mean']:.1f} "
            f"| {100 * after['grounding_best']:.1f} | {100 * after['rollout_best']:.1f} "
            f"| {100 * after['vgp_accuracy']:.1f} | {100 * after['id_accuracy']:.1f} |"
        )
    before = rows[0][2]
    print(
        f"before fine-tuning: grounding mean {100 * before['grounding_mean']:.1f}, "
        f"best head {100 * before['grounding_best']:.1f}; baselines: grounding "
        f"{100 * before['grounding_baseline']:.1f} (uniform over regions), VGP class. "
        f"{100 * before['vgp_accuracy_baseline']:.1f}, identification "
        f"{100 * before['id_accuracy_baseline']:.1f} (majority classes)"
    )


if __name__ == "__main__":
    main()
