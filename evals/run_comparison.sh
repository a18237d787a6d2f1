#!/usr/bin/env bash
# The committed comparison on the embedded model, end to end (resumable: rerun to continue).
#   1. greedy `single` drafts on the frozen 40-task calibration split and on the project's 75 synthetic
#      tasks (tasks/synthetic_code, none from HumanEval) -> gate thresholds
#   2. all eight policies on the first N tasks of the eval split (disjoint from step 1)
# Usage: evals/run_comparison.sh [N_TASKS] [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-40}
C=${2:-16}
VA=${VA:-.venv/bin/valueagent}
RUNS=${RUNS:-runs}

$VA run humaneval --split calibration --policy single --concurrency "$C" \
    --output-dir "$RUNS/calibration" --resume
$VA run tasks/synthetic_code/tasks.jsonl --policy single --concurrency "$C" \
    --output-dir "$RUNS/calibration-synthetic" --resume
$VA calibrate "$RUNS/calibration" "$RUNS/calibration-synthetic" --risk 0.1 -o evals/calibration/embedded-gate.json
$VA eval humaneval --split eval --limit "$N" --concurrency "$C" \
    --policies single,always-test,value,steer-high,steer-low,random-gate,logprob-gate,value+logprob \
    --gate-config evals/calibration/embedded-gate.json --output-dir "$RUNS/comparison-$N" --resume
