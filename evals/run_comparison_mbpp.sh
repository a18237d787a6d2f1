#!/usr/bin/env bash
# The main job on MBPP (issue 25), one embedded model, int8 decoding, end to end and resumable: rerun it to
# continue whatever step was interrupted.
#   1. greedy `single` drafts of MBPP train + validation (457 tasks, never evaluated), made by this model in
#      int8 -> its gate calibration (the HumanEval calibration is not reused: thresholds are in the units of
#      one reading on one benchmark's drafts)
#   2. single, always-test, value, logprob-gate, random-gate on all 497 MBPP test tasks, as two shards
#      (alternate tasks, one process per core, one thread each), merged at the end
# Usage: evals/run_comparison_mbpp.sh embedded|embedded-1.5b [calibrate|compare|merge|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
. evals/lib.sh
case "${1:-}" in
    embedded) CAL=evals/calibration/mbpp-0.5b-int8; OUT=evals/mbpp/comparison-497-0.5b-int8 ;;
    embedded-1.5b) CAL=evals/calibration/mbpp-1.5b-int8; OUT=evals/mbpp/comparison-497-1.5b-int8 ;;
    *) echo "usage: $0 embedded|embedded-1.5b [calibrate|compare|merge|all]" >&2; exit 2 ;;
esac
MODEL=(--model "$1" --quantize int8 --prefix-cache-mb 512)
POLICIES=single,always-test,value,logprob-gate,random-gate
C=${C:-8}

calibrate() {
    on_core 0 run mbpp --split train --policy single "${MODEL[@]}" --concurrency "$C" \
        --output-dir "$CAL/train" --resume & local a=$!
    on_core 1 run mbpp --split validation --policy single "${MODEL[@]}" --concurrency "$C" \
        --output-dir "$CAL/validation" --resume & local b=$!
    wait_all "$a" "$b"
    "$VA" calibrate "$CAL/train" "$CAL/validation" --risk 0.1 -o "$CAL/gate.json"
}

run_steps "${2:-all}" mbpp test
