#!/usr/bin/env bash
# Sets up the environment (scripts/setup.sh) and runs the main job: the paper's
# Table 1 on the embedded grounded scenes (written once into data/scenes),
# quick preset. Extra arguments go to `groundattn experiment`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/groundattn experiment --config configs/experiment/quick.yaml --out runs/experiment "$@"
