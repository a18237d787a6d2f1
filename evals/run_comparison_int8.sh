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
VA=${VA:-.venv/bin/valueagent}
PY=${PY:-.venv/bin/python}
case "${1:-}" in
    embedded) CAL=evals/calibration/embedded-int8; OUT=evals/humaneval/comparison-124-0.5b-int8 ;;
    embedded-1.5b) CAL=evals/calibration/embedded-1.5b; OUT=evals/humaneval/comparison-124-1.5b-int8 ;;
    *) echo "usage: $0 embedded|embedded-1.5b [calibrate|compare|merge|all]" >&2; exit 2 ;;
esac
MODEL=(--model "$1" --quantize int8 --prefix-cache-mb 512)
POLICIES=single,always-test,value,value-branch,logprob-branch,logprob-gate,random-gate,steer-high,steer-low
C=${C:-8}

on_core() {  # run a command pinned to one core with one thread; rerun (it has --resume) if a signal killed it
    local core=$1 rc; shift
    while true; do
        rc=0
        OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c "$core" "$VA" "$@" || rc=$?
        [ "$rc" -ge 128 ] || return "$rc"
        echo "killed (exit $rc) on core $core, resuming: $*" >&2
        sleep 10
    done
}

wait_all() {  # wait for every pid given; fail if any failed (a bare `wait` would report success)
    local rc=0 pid
    for pid in "$@"; do wait "$pid" || rc=$?; done
    return "$rc"
}

calibrate() {
    on_core 0 run humaneval --split calibration --policy single "${MODEL[@]}" --concurrency "$C" \
        --output-dir "$CAL/calibration" --resume & local a=$!
    on_core 1 run tasks/synthetic_code/tasks.jsonl --policy single "${MODEL[@]}" --concurrency "$C" \
        --output-dir "$CAL/synthetic" --resume & local b=$!
    wait_all "$a" "$b"
    "$VA" calibrate "$CAL/calibration" "$CAL/synthetic" --risk 0.1 -o "$CAL/gate.json"
}

shard_ids() {  # the eval split's tasks at even (0) or odd (1) positions
    "$PY" -c "from valueagent.tasks import humaneval_split; print(','.join(t.task_id for t in humaneval_split('eval')[$1::2]))"
}

compare() {
    local pids=() k
    for k in 0 1; do
        on_core "$k" eval humaneval --split eval --task-ids "$(shard_ids "$k")" --policies "$POLICIES" \
            "${MODEL[@]}" --gate-config "$CAL/gate.json" --concurrency "$C" --output-dir "$OUT/shard-$k" --resume &
        pids+=($!)
    done
    wait_all "${pids[@]}"
}

merge() {
    "$VA" eval merge "$OUT/shard-0" "$OUT/shard-1" -o "$OUT" --overwrite
}

case "${2:-all}" in
    calibrate) calibrate ;;
    compare) compare ;;
    merge) merge ;;
    all) calibrate; compare; merge ;;
    *) echo "usage: $0 embedded|embedded-1.5b [calibrate|compare|merge|all]" >&2; exit 2 ;;
esac
