# Shared by the evals/ scripts (source it): one process per core, one thread each, resumed if killed.
VA=${VA:-.venv/bin/valueagent}
PY=${PY:-.venv/bin/python}

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

shard_ids() {  # benchmark split k: the split's tasks at even (0) or odd (1) positions
    "$PY" -c "from valueagent.benchmarks import benchmark; print(','.join(t.task_id for t in benchmark('$1').tasks('$2')[$3::2]))"
}

compare_shards() {  # benchmark split: every policy ($POLICIES) in two shards, one per core, into $OUT/shard-k
    local pids=() k
    for k in 0 1; do
        on_core "$k" eval "$1" --split "$2" --task-ids "$(shard_ids "$1" "$2" "$k")" --policies "$POLICIES" \
            "${MODEL[@]}" --gate-config "$CAL/gate.json" --concurrency "$C" --output-dir "$OUT/shard-$k" --resume &
        pids+=($!)
    done
    wait_all "${pids[@]}"
}

merge_shards() {  # every shard directory there is (a freed core may have taken a shard's last tasks as shard-2)
    "$VA" eval merge "$OUT"/shard-* -o "$OUT" --overwrite
}

run_steps() {  # step (calibrate|compare|merge|all) benchmark split
    case "$1" in
        calibrate) calibrate ;;
        compare) compare_shards "$2" "$3" ;;
        merge) merge_shards ;;
        all) calibrate; compare_shards "$2" "$3"; merge_shards ;;
        *) echo "unknown step $1: calibrate, compare, merge or all" >&2; exit 2 ;;
    esac
}
