#!/usr/bin/env bash
# The GPU check of issue 9, as one script: run it once on a machine with a CUDA GPU.
#   bash benchmarks/gpu.sh [OUT]        (default OUT: runs/gpu)
# 1. sets up .venv (with the CUDA build of torch 2.13.0 where a GPU is present),
# 2. the training step of the MiniLM-sized encoder in bf16 with the fused attention path
#    (benchmarks/step.py --device cuda --bf16: ms/step, model-FLOP utilisation),
# 3. the default experiment preset (three seeds) in bf16 (run.mixed_precision=auto picks bf16
#    on a GPU), timed, with its Table 1 and learning curves.
# Everything it prints and writes lands in OUT (gpu.log, the experiment's results.md,
# learning_curves.png).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu}
mkdir -p "$OUT"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126 \
  || .venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
{
  nvidia-smi --query-gpu=name,memory.total --format=csv || true
  .venv/bin/python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name())"
  echo "== benchmarks/step.py --device cuda --bf16"
  .venv/bin/python benchmarks/step.py --device cuda --bf16 --batch 64 --repeats 20
  [ -f data/scenes/card.json ] || .venv/bin/groundattn prepare scenes --out data/scenes
  echo "== default experiment preset, bf16"
  start=$(date +%s)
  .venv/bin/python benchmarks/learning.py --config configs/experiment/default.yaml --out "$OUT/experiment"
  echo "experiment wall time: $(( $(date +%s) - start )) s"
  cat "$OUT/experiment/results.md"
} 2>&1 | tee "$OUT/gpu.log"
