#!/usr/bin/env bash
# Value heads of one embedded model on its MBPP banks (issue 26), end to end and resumable:
#   1. bank encode of both MBPP banks and of the model's HumanEval bank (residual features of every sample;
#      resumes; not committed)
#   2. bank heads: fit on MBPP train, choose on validation, refit on both, judge once on MBPP test and, for
#      transfer, on HumanEval's eval split (never fitted on)
#      (+ --export-axis: the chosen single-layer linear head as an axis artifact)
#   3. bank replay of the test bank with the heads' scores, calibrated on the train bank
# ENCODED_ONLY=1 answers on the tasks encoded so far (interim; the result records how many).
# Usage: evals/heads/run.sh embedded|embedded-1.5b
set -euo pipefail
cd "$(dirname "$0")/../.."
VA=${VA:-.venv/bin/valueagent}
case "${1:-}" in
    embedded) NAME=qwen2.5-coder-0.5b ;;
    embedded-1.5b) NAME=qwen2.5-coder-1.5b ;;
    *) echo "usage: $0 embedded|embedded-1.5b" >&2; exit 2 ;;
esac
BANK=evals/bank/$NAME-int8-mbpp
HE=evals/bank/$NAME-int8
OUT=evals/heads/$NAME
partial=(); [ "${ENCODED_ONLY:-0}" = 1 ] && partial=(--encoded-only)
if [ "${ENCODED_ONLY:-0}" != 1 ]; then
    "$VA" bank encode "$BANK/train"
    "$VA" bank encode "$BANK/test"
    "$VA" bank encode "$HE"
fi
"$VA" bank heads "$BANK/train" --test "mbpp-test=$BANK/test" --test "humaneval-eval=$HE:eval" --output "$OUT/heads.json" \
    --export-axis "$OUT/head-axis.safetensors" "${partial[@]}"
scored=(); [ "${ENCODED_ONLY:-0}" = 1 ] && scored=(--scored-only)
"$VA" bank replay "$BANK/test" --calibration-bank "$BANK/train" --scores "$OUT/heads-mbpp-test-scores.json" \
    --scores "$OUT/heads-fit-oof-scores.json" --output "$OUT/replay.json" "${scored[@]}"
