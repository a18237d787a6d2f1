"""Runner benchmark (not a timed test): concurrency gain and a full HumanEval `single` pass, from one run.

1. ``ratio``: the same N HumanEval eval-split tasks run by ``valueagent.runner.run_tasks`` at concurrency 1
   and at concurrency C (default 4) on one backend; reports tasks/minute of each and their ratio (the
   issue's target: >= 2.5x at C = 4 on the embedded model). One warm-up task runs first, untimed.
2. ``full`` (``--full``): all 164 HumanEval tasks with the ``single`` policy at ``--full-concurrency``
   (default 8, the backend's batch size); reports wall time (target: < 20 min on a 2-core CPU),
   tasks/minute and pass@1.

Model loading is timed separately and excluded. Results go to ``--out`` (JSON) and stdout.
Usage: python benchmarks/bench_runner.py [--model embedded] [--quantize int8] [--tasks 8] [--concurrency 4] [--full]
       [--full-concurrency 8] [--skip-ratio] [--policy single] [--out benchmarks/results/runner.json]
Long: on the embedded model on 2 cores, part 1 with 8 tasks takes ~5-10 min, part 2 ~20-40 min.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from valueagent.cli.common import load_backend_or_fail
from valueagent.runner import RunConfig, read_results, run_tasks
from valueagent.tasks import Task, humaneval_split


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def timed_run(tasks: tuple[Task, ...], *, backend: Any, sandbox: Any, policy: str, concurrency: int,
                    seed: int = 0) -> dict[str, Any]:
    """Run ``tasks`` into a fresh temporary directory; wall time, rate and pass count."""
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        config = RunConfig(policies=(policy,), output_dir=Path(tmp), concurrency=concurrency, seed=seed)
        done = [0]

        def on_result(record: dict[str, Any]) -> None:
            done[0] += 1
            _say(f"  [{policy} c={concurrency}] {done[0]}/{len(tasks)} {record['task_id']} "
                 f"{'pass' if record['passed'] else 'fail'} ({record['tokens']} tok, {record['wall_s']:.1f}s)")

        start = time.perf_counter()
        outcome = await run_tasks(tasks, backend=backend, sandbox=sandbox, config=config, on_result=on_result)
        wall = time.perf_counter() - start
        records = read_results(tmp)
    n = len(records)
    return {
        "policy": policy, "concurrency": concurrency, "tasks": n, "errors": len(outcome.errors),
        "wall_s": round(wall, 2), "tasks_per_min": round(60 * n / wall, 3) if wall > 0 else None,
        "passed": sum(bool(r["passed"]) for r in records),
        "tokens": sum(int(r["tokens"]) for r in records),
        "tokens_per_s": round(sum(int(r["tokens"]) for r in records) / wall, 2) if wall > 0 else None,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from valueagent.sandbox import Sandbox

    t0 = time.perf_counter()
    backend = load_backend_or_fail(args.model, args.axis, None, None, quantize=args.quantize)
    report: dict[str, Any] = {
        "model": backend.info().model_id, "dtype": backend.info().dtype, "quantization": args.quantize,
        "load_s": round(time.perf_counter() - t0, 2),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    sandbox = Sandbox(workers=args.workers)
    try:
        eval_tasks = humaneval_split("eval")
        _say("warm-up (untimed)")
        await timed_run(eval_tasks[:1], backend=backend, sandbox=sandbox, policy=args.policy, concurrency=1)
        if not args.skip_ratio:
            tasks = eval_tasks[: args.tasks]
            _say(f"ratio: {len(tasks)} tasks at concurrency 1, then {args.concurrency}")
            one = await timed_run(tasks, backend=backend, sandbox=sandbox, policy=args.policy, concurrency=1)
            many = await timed_run(tasks, backend=backend, sandbox=sandbox, policy=args.policy,
                                   concurrency=args.concurrency)
            ratio = many["tasks_per_min"] / one["tasks_per_min"] if one["tasks_per_min"] else None
            report["ratio"] = {"c1": one, f"c{args.concurrency}": many,
                               "speedup": None if ratio is None else round(ratio, 3), "target": 2.5,
                               "meets_target": None if ratio is None else ratio >= 2.5}
        if args.full:
            tasks = humaneval_split("all")
            _say(f"full: {len(tasks)} tasks, policy single, concurrency {args.full_concurrency}")
            full = await timed_run(tasks, backend=backend, sandbox=sandbox, policy="single",
                                   concurrency=args.full_concurrency)
            full["pass@1"] = round(full["passed"] / max(1, full["tasks"]), 4)
            full["target_s"] = 20 * 60
            full["meets_target"] = full["wall_s"] < 20 * 60
            report["full"] = full
    finally:
        await backend.aclose()
        close = getattr(sandbox, "close", None)
        if close is not None:
            close()
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded")
    p.add_argument("--axis", default="default")
    p.add_argument("--quantize", default=None, choices=["int8"], help="Decode through int8 linear layers.")
    p.add_argument("--policy", default="single", help="Policy of the ratio part (the full pass is `single`).")
    p.add_argument("--tasks", type=int, default=8, help="Tasks in the ratio part.")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--full-concurrency", type=int, default=8, help="Tasks in flight in part 2.")
    p.add_argument("--workers", type=int, default=4, help="Sandbox worker processes.")
    p.add_argument("--skip-ratio", action="store_true", help="Skip part 1.")
    p.add_argument("--full", action="store_true", help="Also run part 2 (all 164 tasks, `single`).")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/runner.json"))
    args = p.parse_args()
    report = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
