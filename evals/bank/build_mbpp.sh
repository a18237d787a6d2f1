#!/usr/bin/env bash
# MBPP banks of one embedded model, one builder per core, resumable (issue "value heads"):
#   test split (497 tasks after exclusions), N = 8   -> evals/bank/<bank>/test
#   train+validation (457 tasks), N = 4               -> evals/bank/<bank>/train
# Usage: evals/bank/build_mbpp.sh embedded|embedded-1.5b [test|train|both|test-reverse|train-reverse]
# Both models' banks decode on transformers with int8 decoding, like their HumanEval banks (a bank never mixes
# engines): for a bank's batches of 9 sampled rows int8 is the faster engine on this CPU (a batch of 8 on 2 cores:
# 69.7 against 58.8 tokens/s for the 0.5B, benchmarks/results/llama.json; a 1.5B llama.cpp builder's first task
# ran 11 tokens/s on one core beside an encode, the int8 1.5B builders of the HumanEval bank ~24), at ~10 GB a 1.5B
# builder against ~2.8 GB. ENGINE="--backend llama" builds on llama.cpp instead (a separate bank).
# Each builder writes one file per task; rerunning continues where it stopped. Two builders on the same
# split meet in the middle (`test-reverse`, `train-reverse` are the second ones).
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${1:?embedded or embedded-1.5b}
what=${2:-both}
case "$model" in
  embedded) name=qwen2.5-coder-0.5b ;;
  embedded-1.5b) name=qwen2.5-coder-1.5b ;;
  *) echo "unknown model $model: embedded or embedded-1.5b" >&2; exit 2 ;;
esac
read -r -a engine <<< "${ENGINE:---backend hf --quantize int8}"
case "${engine[*]}" in
  "--backend hf --quantize int8") name=$name-int8-mbpp ;;
  "--backend llama") name=$name-llama-mbpp ;;
  *) echo "ENGINE: --backend hf --quantize int8 (default) or --backend llama" >&2; exit 2 ;;
esac
VA=${VA:-.venv/bin/valueagent}
root=evals/bank/$name
common=(--model "$model" "${engine[@]}" --concurrency 2 --prefix-cache-mb 0)
one() {  # core, split, samples, dir, extra...
  local core=$1 split=$2 n=$3 dir=$4; shift 4
  local resume=(); [ -f "$dir/bank.json" ] && resume=(--resume)
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c "$core" "$VA" bank build mbpp --split "$split" -n "$n" \
      -o "$dir" "${common[@]}" "${resume[@]}" "$@"
}
rc=0
case "$what" in
  test) one 0 test 8 "$root/test" || rc=$? ;;
  test-reverse) one 1 test 8 "$root/test" --reverse || rc=$? ;;
  train) one 1 train+validation 4 "$root/train" || rc=$? ;;
  train-reverse) one 0 train+validation 4 "$root/train" --reverse || rc=$? ;;
  both)
    one 0 test 8 "$root/test" & a=$!
    one 1 train+validation 4 "$root/train" & b=$!
    wait $a || rc=$?
    wait $b || rc=$? ;;
  *) echo "unknown part $what: test, test-reverse, train, train-reverse or both" >&2; exit 2 ;;
esac
exit $rc
