"""CLI commands: `run` (agent policies over a task file or HumanEval) and `calibrate` (gate thresholds)."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from valueagent.cli import checks, gates
from valueagent.cli.common import (
    ANSWER_TOKENS_OPT,
    AXIS_OPT,
    BACKEND_OPT,
    DEVICE_OPT,
    DTYPE_OPT,
    MAX_BACKTRACKS_OPT,
    MAX_REVISIONS_OPT,
    MAX_TEST_RUNS_OPT,
    MAX_TOKENS_OPT,
    MODEL_OPT,
    PREFIX_CACHE_OPT,
    QUANTIZE_OPT,
    WORKERS_OPT,
    fail,
    load_backend_or_fail,
)
from valueagent.cli.gates import GATE_CONFIG_HELP, UNCALIBRATED_HELP

_OUT = Path("runs/latest")


def load_tasks(source: str, *, split: str | None, limit: int | None, task_ids: str | None) -> tuple[Any, ...]:
    """Tasks of a benchmark's split (``humaneval``, ``mbpp``) or of a HumanEval-schema JSONL file, filtered
    and truncated. A bad split, id or data file fails in one line, before any model loads."""
    from valueagent.benchmarks import BENCHMARKS
    from valueagent.tasks import TaskFormatError

    name = checks.split(split, source)
    try:
        tasks = BENCHMARKS[source].tasks(name) if source in BENCHMARKS else checks.task_file(source)
    except (TaskFormatError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    if task_ids:
        wanted = [t.strip() for t in task_ids.split(",") if t.strip()]
        known = {t.task_id for t in tasks}
        if missing := [t for t in wanted if t not in known]:
            fail(f"unknown task ids {missing}; they must exist in {source}"
                 + (f" --split {name}" if source in BENCHMARKS else ""))
        tasks = tuple(t for t in tasks if t.task_id in set(wanted))
    return tuple(tasks[:limit]) if limit is not None else tuple(tasks)


def run(
    tasks: Annotated[str, typer.Argument(help="A HumanEval-schema TASKS.jsonl, `humaneval` or `mbpp`.")],
    policy: Annotated[str, typer.Option("--policy", help="A policy, or several: a,b,c.")] = "value",
    model: str = MODEL_OPT,
    axis: str = AXIS_OPT,
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    quantize: str | None = QUANTIZE_OPT,
    engine: str = BACKEND_OPT,
    prefix_cache_mb: int = PREFIX_CACHE_OPT,
    gate_config: Annotated[Path | None, typer.Option("--gate-config", help=GATE_CONFIG_HELP)] = None,
    uncalibrated: Annotated[bool, typer.Option("--uncalibrated", help=UNCALIBRATED_HELP)] = False,
    split: Annotated[str | None, typer.Option("--split", help="humaneval: eval (default), calibration, all; mbpp: "
                                              "test (default), validation, train, prompt, all.")] = None,
    task_ids: Annotated[str | None, typer.Option("--task-ids", help="Comma-separated task ids.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N tasks.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Tasks in flight.")] = 4,
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Writes DIR/results.jsonl.")] = _OUT,
    resume: Annotated[bool, typer.Option("--resume", help="Skip finished pairs; redo a torn line.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Run seed (per-task seeds derive from it).")] = 0,
    max_backtracks: int = MAX_BACKTRACKS_OPT,
    max_test_runs: int = MAX_TEST_RUNS_OPT,
    max_revisions: int = MAX_REVISIONS_OPT,
    max_tokens: int = MAX_TOKENS_OPT,
    answer_tokens: int = ANSWER_TOKENS_OPT,
    workers: int = WORKERS_OPT,
) -> None:
    """Run agent policies over tasks; one JSON line per (task, policy) in DIR/results.jsonl."""
    from valueagent.agent.state import Budgets
    from valueagent.benchmarks import BENCHMARKS
    from valueagent.runner import RunConfig

    names = checks.policies(policy, option="--policy")
    task_list = load_tasks(tasks, split=split, limit=limit, task_ids=task_ids)
    meta: dict[str, Any] = {"tasks": tasks, "split": checks.split(split, tasks) if tasks in BENCHMARKS else None}
    if tasks in BENCHMARKS:
        meta["benchmark"] = BENCHMARKS[tasks].describe()
    checks.axis(axis, model=model)
    checks.output_dir(output_dir, resume=resume)
    gate = gates.choose(gate_config, names, model=model, axis=axis, uncalibrated=uncalibrated)
    gates.disjoint(gate, task_list)
    budgets = Budgets(backtracks=max_backtracks, test_runs=max_test_runs, revisions=max_revisions,
                      tokens=max_tokens)
    backend = load_backend_or_fail(model, axis, device, dtype, max_batch=max(8, concurrency), quantize=quantize,
                                   prefix_cache_mb=prefix_cache_mb, engine=engine)
    checks.axis_reading(names, backend.info(), model=model)
    meta["model"] = asdict(backend.info())
    gate = gates.confirm(gate, backend.info(), model=model, axis=axis)
    gates.disjoint(gate, task_list)
    configs = gate.configs
    segment_tokens = int((gate.document or {}).get("segment_tokens", 32))
    meta["gate_config"] = gate.describe()
    from valueagent.sandbox import Sandbox

    sandbox = Sandbox(workers=workers)
    config = RunConfig(
        policies=names, output_dir=output_dir, concurrency=concurrency, resume=resume, seed=seed,
        budgets=budgets, gate_configs=configs, segment_tokens=segment_tokens, answer_tokens=answer_tokens,
        meta=meta,
    )
    code = asyncio.run(_run_with_progress(task_list, backend, sandbox, config))
    raise typer.Exit(code)


async def _run_with_progress(tasks: tuple[Any, ...], backend: Any, sandbox: Any, config: Any) -> int:
    from valueagent.cli.progress import TaskProgress
    from valueagent.runner import run_tasks

    passed = {"n": 0, "k": 0}
    with TaskProgress(",".join(config.policies), expected_tokens=config.answer_tokens) as progress:
        progress.start(len(tasks) * len(config.policies))

        def on_result(record: dict[str, Any]) -> None:
            passed["n"] += 1
            passed["k"] += bool(record["passed"])
            progress.advance(f"pass {passed['k']}/{passed['n']} (last {record['task_id']})",
                             key=f"{record['task_id']} {record['policy']}", tokens=record.get("tokens"))

        def on_event(task_id: str, policy: str, event: dict[str, Any]) -> None:
            progress.event(f"{task_id} {policy}", event)

        try:
            outcome = await run_tasks(tasks, backend=backend, sandbox=sandbox, config=config,
                                      on_result=on_result, on_event=on_event)
        except (FileExistsError, ValueError) as exc:
            fail(str(exc))
        finally:
            await backend.aclose()
    msg = f"{outcome.done} written, {outcome.skipped} already done -> {config.output_dir / 'results.jsonl'}"
    if outcome.repaired:
        msg += " (a torn last line was redone)"
    typer.echo(msg, err=True)
    for key, err in outcome.errors.items():
        typer.secho(f"failed {key}: {err}", fg=typer.colors.RED, err=True)
    return 1 if outcome.errors else 0


def calibrate_cmd(
    results: Annotated[list[Path], typer.Argument(help="Run dirs or results.jsonl of calibration runs.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the calibration JSON.")],
    risk: Annotated[float, typer.Option("--risk", help="Max share of untested acceptances wrong.")] = 0.1,
    backtrack_rate: Annotated[float, typer.Option("--backtrack-rate", help="Good drafts cut, max.")] = 0.1,
    segment_tokens: Annotated[int, typer.Option("--segment-tokens", min=1)] = 32,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random-gate control.")] = 0,
) -> None:
    """Fit gate thresholds (value, logprob, value+logprob, random rates) on calibration results."""
    from valueagent.agent.calibrate import calibrate, reading_of_records, samples_from_records, save_calibration
    from valueagent.runner import read_results

    records = [r for path in results for r in read_results(path.parent if path.is_file() else path)]
    samples = samples_from_records(records)
    try:
        reading = reading_of_records(records)
    except ValueError as exc:
        fail(str(exc))
    if len(samples) < 2:
        fail(f"found {len(samples)} usable records in {[str(p) for p in results]}; run "
             "`valueagent run humaneval --split calibration --policy single` first")
    source = {"results": [str(p) for p in results], "command": " ".join(sys.argv)}
    doc = calibrate(samples, risk=risk, backtrack_rate=backtrack_rate, segment_tokens=segment_tokens,
                    seed=seed, source=source, reading=reading)
    save_calibration(doc, output)
    typer.echo(json.dumps({"output": str(output), "n": len(samples), "report": doc["report"]}, indent=2))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("run")(run)
    app.command("calibrate")(calibrate_cmd)
