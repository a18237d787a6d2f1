#!/usr/bin/env bash
# The live comparison of issue 19 on one embedded model, int8 decoding, end to end and resumable: rerun it
# to continue whatever step was interrupted. The same command for both models makes them comparable task by
# task (`valueagent compare` of the two output directories gives each value policy's edge over its control
# on each model and the difference of the edges).
#   1. greedy `single` drafts on the frozen 40-task calibration split and the 75 synthetic tasks, made by
#      this model in int8 (never another model's) -> its gate calibration
#   2. every policy on all 124 eval-split tasks, as two shards (alternate tasks, one process per core, one
#      thread each: a 2-thread decode is slowed badly by any neighbour on this machine), merged at the end
# A 1.5B process holds ~10 GB (float32 weights for prompts, int8 copies for decoding, a 512 MB prefix
# cache): two fit in 24 GB with little to spare. A 0.5B process holds ~3 GB.
# Usage: evals/run_comparison_int8.sh embedded|embedded-1.5b [calibrate|compare|merge|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
. evals/lib.sh
case "${1:-}" in
    embedded) CAL=evals/calibration/embedded-int8; OUT=evals/humaneval/comparison-124-0.5b-int8 ;;
    embedded-1.5b) CAL=evals/calibration/embedded-1.5b; OUT=evals/humaneval/comparison-124-1.5b-int8 ;;
    *) echo "usage: $0 embedded|embedded-1.5b [calibrate|compare|merge|all]" >&2; exit 2 ;;
esac
MODEL=(--model "$1" --quantize int8 --prefix-cache-mb 512)
POLICIES=single,always-test,value,value-branch,logprob-branch,logprob-gate,random-gate,steer-high,steer-low
C=${C:-8}

calibrate() {
    on_core 0 run humaneval --split calibration --policy single "${MODEL[@]}" --concurrency "$C" \
        --output-dir "$CAL/calibration" --resume & local a=$!
    on_core 1 run tasks/synthetic_code/tasks.jsonl --policy single "${MODEL[@]}" --concurrency "$C" \
        --output-dir "$CAL/synthetic" --resume & local b=$!
    wait_all "$a" "$b"
    "$VA" calibrate "$CAL/calibration" "$CAL/synthetic" --risk 0.1 -o "$CAL/gate.json"
}

run_steps "${2:-all}" humaneval eval
