"""Training throughput of the main job's fine-tuning stages under each setting that could change it.

    .venv/bin/python benchmarks/throughput.py --init runs/experiment/pretrain/model [--steps 40] [--repeats 2]

Trains each stage (VGP none, VQA) for a few steps from the same model with
every setting — torch threads against DataLoader workers, and the word
embeddings trained or fixed (``optim.freeze``) — round-robin so that the
machine's noise hits all settings alike, and prints the median training
samples/s of the logged windows after the first (which holds the warm-up),
each as a ratio to the quick preset's setting (2 threads, 1 worker, fixed
word embeddings).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXED, TRAINED = "optim.freeze=[encoder.embeddings.word_embeddings]", "optim.freeze=[]"
# (torch threads, loader workers, word embeddings); the first is the quick preset's
SETTINGS = [
    (2, 1, FIXED),
    (2, 1, TRAINED),
    (2, 0, FIXED),
    (2, 2, FIXED),
    (1, 1, FIXED),
    (1, 0, FIXED),
]
STAGES = {
    "vgp": ["supervision.method=none", "optim.batch_size=16"],
    "vqa": ["optim.batch_size=8", "data.predict_splits=[]"],
}


def samples_per_s(
    stage: str, init: str, setting: tuple[int, int, str], steps: int, data: str
) -> float:
    threads, workers, freeze = setting
    with tempfile.TemporaryDirectory() as tmp:
        sets = [
            f"data.root={data}",
            f"model.init={init}",
            f"optim.max_steps={steps}",
            f"data.num_workers={workers}",
            "run.log_every=5",
            f"run.save_every={10 * steps}",
            "data.max_val_images=10" if stage == "vgp" else "data.max_val_questions=20",
            *STAGES[stage],
            freeze,
        ]
        command = [sys.executable, "-m", "groundattn.cli", "train", stage]
        command += ["--config", str(ROOT / "configs" / stage / "default.yaml"), "--out", f"{tmp}/r"]
        for s in sets:
            command += ["--set", s]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        subprocess.run(command, check=True, env=env, capture_output=True)
        records = [
            json.loads(line) for line in Path(f"{tmp}/r/metrics.jsonl").read_text().splitlines()
        ]
        rates = [r["samples_per_s"] for r in records if "samples_per_s" in r][1:]
        return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="a run's model/ to start from (Original)")
    parser.add_argument("--data", default="data/scenes")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rates: dict[tuple, list[float]] = {}
    for _ in range(args.repeats):
        for stage in STAGES:
            for setting in SETTINGS:
                rate = samples_per_s(stage, args.init, setting, args.steps, args.data)
                rates.setdefault((stage, setting), []).append(rate)
                print(f"{stage} {_label(setting)}: {rate:.1f} samples/s", flush=True)
    print("\n| stage | torch threads | loader workers | word embeddings | samples/s | × preset |")
    print("|---|---|---|---|---|---|")
    for stage in STAGES:
        reference = statistics.median(rates[(stage, SETTINGS[0])])
        for setting in SETTINGS:
            rate = statistics.median(rates[(stage, setting)])
            threads, workers, _ = setting
            embeddings = "fixed" if setting[2] == FIXED else "trained"
            print(
                f"| {stage} | {threads} | {workers} | {embeddings} | {rate:.1f} | {rate / reference:.2f} |"
            )


def _label(setting: tuple[int, int, str]) -> str:
    threads, workers, freeze = setting
    return f"threads {threads} workers {workers} word embeddings {'fixed' if freeze == FIXED else 'trained'}"


if __name__ == "__main__":
    main()
