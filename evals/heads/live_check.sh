#!/usr/bin/env bash
# The exported value head driving live policies (issue 26), one embedded model, int8 decoding, resumable:
#   1. value-rank with --axis head on the first 40 MBPP test tasks; compared sample by sample and task by task
#      with the head's replay on the model's MBPP test bank (the same seeds draw the same samples)
#      -> evals/heads/<model>/live-check/agreement.json
#   2. (gate) greedy drafts of MBPP train + validation read by the head -> its own gate calibration, then the
#      `value` gate with --axis head on the same 40 tasks, beside the contrastive axis's `value` there.
#      The head was fitted on these tasks' samples: this calibration is in-sample for it (a check that the
#      gate runs on the head's reading, not a gate figure; see live-check/README.md)
# Usage: evals/heads/live_check.sh embedded|embedded-1.5b [rank|gate|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/../.."
. evals/lib.sh
case "${1:-}" in
    embedded) NAME=qwen2.5-coder-0.5b ;;
    embedded-1.5b) NAME=qwen2.5-coder-1.5b ;;
    *) echo "usage: $0 embedded|embedded-1.5b [rank|gate|all]" >&2; exit 2 ;;
esac
OUT=evals/heads/$NAME/live-check
BANK=evals/bank/$NAME-int8-mbpp/test
HEAD=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['validation']['head']['name'])" \
    "evals/heads/$NAME/head-axis.json")
MODEL=(--model "$1" --quantize int8 --axis head --prefix-cache-mb 512 --concurrency 8)
IDS=$("$PY" -c "from valueagent.benchmarks import benchmark; print(','.join(t.task_id for t in benchmark('mbpp').tasks('test')[:40]))")
CORE=${CORE:-0}

rank() {
    on_core "$CORE" run mbpp --split test --task-ids "$IDS" --policy value-rank "${MODEL[@]}" \
        --output-dir "$OUT/value-rank" --resume
    "$PY" scripts/check_bank_replay.py "$OUT/value-rank" "$BANK" --scores "evals/heads/$NAME/heads-mbpp-test-scores.json" \
        --as "value-rank=$HEAD-rank" --out "$OUT/agreement.json" || true  # disagreements are the finding, listed
}

gate() {
    on_core "$CORE" run mbpp --split train --policy single "${MODEL[@]}" --output-dir "$OUT/drafts-train" --resume
    on_core "$CORE" run mbpp --split validation --policy single "${MODEL[@]}" --output-dir "$OUT/drafts-validation" --resume
    "$VA" calibrate "$OUT/drafts-train" "$OUT/drafts-validation" --risk 0.1 -o "$OUT/gate.json"
    on_core "$CORE" run mbpp --split test --task-ids "$IDS" --policy value "${MODEL[@]}" --gate-config "$OUT/gate.json" \
        --output-dir "$OUT/value" --resume
}

case "${2:-all}" in
    rank) rank ;;
    gate) gate ;;
    all) rank; gate ;;
    *) echo "unknown step $2: rank, gate or all" >&2; exit 2 ;;
esac
