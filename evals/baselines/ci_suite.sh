#!/usr/bin/env bash
# The CI regression suite (minutes on a 2-core CPU): the first 4 eval-split HumanEval tasks x {single,
# value} on the embedded model, checked against the committed baseline with a paired test.
#   evals/baselines/ci_suite.sh RUN_DIR              run (resumable), then check against embedded-ci.json
#   evals/baselines/ci_suite.sh RUN_DIR --baseline   run, then (re)write embedded-ci.json from it
# Regenerate the baseline only on purpose (a model, axis, gate-config or agent change), in its own commit.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${1:?usage: evals/baselines/ci_suite.sh RUN_DIR [--baseline]}
VA=${VA:-.venv/bin/valueagent}
BASE=evals/baselines/embedded-ci.json

$VA eval humaneval --split eval --limit 4 --policies single,value --concurrency 8 \
    --gate-config evals/calibration/embedded-gate.json --output-dir "$RUN" --resume
if [ "${2:-}" = "--baseline" ]; then
    $VA eval baseline --run "$RUN" --out "$BASE"
else
    # One task of four may flip (sampling numerics); two flips, or a significant drop, fail.
    $VA eval regress --baseline "$BASE" --run "$RUN" --max-drop 0.25 --json
fi
