"""CLI commands: ``eval humaneval|mbpp``, ``eval report``, ``eval baseline``, ``eval regress`` and ``compare``."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from valueagent.benchmarks import BENCHMARKS
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
    check_engine,
    fail,
)
from valueagent.cli.gates import GATE_CONFIG_HELP, UNCALIBRATED_HELP

eval_app = typer.Typer(name="eval", help="Evaluate policies, summarize runs, check regressions.",
                       no_args_is_help=True)

_POLICIES = "value,single,always-test,random-gate,logprob-gate,value+logprob,steer-high,steer-low"


def _ids(values: list[str] | None) -> tuple[str, ...]:
    return tuple(t.strip() for v in values or () for t in v.split(",") if t.strip())


def _console() -> Any:
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:  # a log file: wide enough for the policy table
        console.width = 160
    return console


def make_backend(
    model: str, axis: str | None, device: str | None, dtype: str | None, max_batch: int = 8,
    quantize: str | None = None, prefix_cache_mb: int = 1024, engine: str = "auto",
) -> Any:
    """The backend ``eval humaneval`` runs on (tests replace this function with a scripted fake)."""
    from valueagent.cli.common import load_backend_or_fail

    return load_backend_or_fail(model, axis, device, dtype, max_batch=max_batch, quantize=quantize,
                                prefix_cache_mb=prefix_cache_mb, engine=engine)


def make_ray_backend(
    model: str, axis: str | None, device: str | None, dtype: str | None, max_batch: int = 8,
    quantize: str | None = None, prefix_cache_mb: int = 1024, engine: str = "auto", *, address: str | None = None,
    replicas: int | None = None,
) -> Any:
    """``--ray``: model replicas on a Ray cluster behind one backend (valueagent.runtime.ray_backend)."""
    from valueagent.runtime.ray_backend import ReplicaSpec, start_replicas

    spec = ReplicaSpec(model=model, axis=None if axis in ("none", "") else axis, device=device, dtype=dtype,
                       max_batch=max_batch, quantize=quantize, prefix_cache_mb=prefix_cache_mb, engine=engine)
    try:
        return start_replicas(spec, address=address, replicas=replicas)
    except (ImportError, ValueError) as exc:
        fail(str(exc))
    except Exception as exc:  # a replica that failed to load (RayActorError), a cluster that is not there
        fail(f"the Ray model replicas did not start: {type(exc).__name__}: {exc} (rerun with --debug for more)")


def make_sandbox(workers: int) -> Any:
    """The sandbox pool ``eval humaneval`` runs tests in (tests replace this function)."""
    from valueagent.sandbox import Sandbox

    return Sandbox(workers=workers)


def run_benchmark(
    bench: str,
    policies: Annotated[str, typer.Option("--policies", help="Comma-separated policies.")] = _POLICIES,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", help="The run directory to write (default: "
                                                    "runs/<benchmark>).")] = None,
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
    task_ids: Annotated[list[str] | None, typer.Option("--task-ids", help="Task ids (comma-separated or "
                                                        "repeated).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N tasks.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="(task, policy) pairs in flight.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Run seed (per-task seeds derive from it).")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a run: skip finished pairs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print summary.json to stdout.")] = False,
    fail_under: Annotated[float | None, typer.Option("--fail-under", help="Exit 1 if pass@1 of `value` (or of "
                                                     "each --check policy) is below X (0-1, or percent).")] = None,
    check: Annotated[str | None, typer.Option("--check", help="Policies --fail-under checks.")] = None,
    max_backtracks: int = MAX_BACKTRACKS_OPT,
    max_test_runs: int = MAX_TEST_RUNS_OPT,
    max_revisions: int = MAX_REVISIONS_OPT,
    max_tokens: int = MAX_TOKENS_OPT,
    answer_tokens: int = ANSWER_TOKENS_OPT,
    workers: int = WORKERS_OPT,
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Bootstrap resamples.")] = 10_000,
    use_ray: Annotated[bool, typer.Option("--ray", help="Spread the model calls over model replicas on a Ray "
                                          "cluster (a local one unless --address); agents, sandbox and "
                                          "records stay here. Needs `pip install 'valueagent[ray]'`.")] = False,
    address: Annotated[str | None, typer.Option("--address", help="With --ray: the cluster to join (`auto`, "
                                                "`ray://HOST:10001`). Default: start a local one.")] = None,
    replicas: Annotated[int | None, typer.Option("--replicas", min=1, help="With --ray: model replicas (default: "
                                                 "one per GPU, or 1 sharing the CPU cores).")] = None,
) -> None:
    """Run every policy on the same tasks of a benchmark and write config, results, summary, samples, report."""
    from valueagent.agent.state import Budgets
    from valueagent.eval.config import ConfigMismatchError
    from valueagent.eval.humaneval import HumanEvalSettings, select_tasks
    from valueagent.eval.humaneval import fail_under as below

    output_dir = output_dir or Path(f"runs/{bench}")
    settings = HumanEvalSettings(
        policies=checks.policies(policies), output_dir=output_dir, benchmark=bench, split=checks.split(split, bench),
        limit=limit,
        task_ids=_ids(task_ids), concurrency=concurrency, seed=seed, resume=resume, model=model,
        axis=None if axis in ("none", "") else axis, gate_config=gate_config, answer_tokens=answer_tokens,
        n_boot=n_boot,
        budgets=Budgets(backtracks=max_backtracks, test_runs=max_test_runs, revisions=max_revisions,
                        tokens=max_tokens),
    )
    try:
        selected = select_tasks(settings.split, limit=limit, task_ids=settings.task_ids,  # before any model
                                bench=bench)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    checked = checks.policies(check, option="--check") if check else ()
    checks.ray_options(use_ray, address=address, replicas=replicas, model=model)
    check_engine(model, engine, quantize=quantize, device=device, dtype=dtype)
    checks.axis(axis, model=model)
    checks.output_dir(output_dir, resume=resume)
    gate = gates.choose(gate_config, settings.policies, model=model, axis=axis, uncalibrated=uncalibrated)
    gates.disjoint(gate, selected)
    if use_ray:
        backend = make_ray_backend(model, axis, device, dtype, max(8, concurrency), quantize, prefix_cache_mb, engine,
                                   address=address, replicas=replicas)
    else:
        backend = make_backend(model, axis, device, dtype, max(8, concurrency), quantize, prefix_cache_mb, engine)
    checks.axis_reading(settings.policies, backend.info(), model=model)
    gate = gates.confirm(gate, backend.info(), model=model, axis=axis)
    settings = replace(settings, gate_config=gate.path)
    try:
        outcome = asyncio.run(_run(settings, backend, make_sandbox(workers)))
    except (FileExistsError, ConfigMismatchError, ValueError) as exc:
        fail(str(exc))
    _finish(outcome, as_json=as_json)
    code = 1 if outcome.errors else 0
    if fail_under is not None:
        bad = below(outcome.summary, fail_under, checked)
        for msg in bad:
            typer.secho(f"fail-under: {msg}", fg=typer.colors.RED, err=True)
        code = 1 if bad else code
    raise typer.Exit(code)


async def _run(settings: Any, backend: Any, sandbox: Any) -> Any:
    from valueagent.eval.humaneval import run_humaneval

    return await run_with_progress(settings, backend, sandbox, run_humaneval)


async def run_with_progress(settings: Any, backend: Any, sandbox: Any, runner: Any) -> Any:
    """``runner(settings, backend=..., sandbox=..., on_result=..., on_start=..., on_event=...)`` under a live
    progress display (across tasks, and inside each task in flight)."""
    from valueagent.cli.progress import TaskProgress

    counts: dict[str, list[int]] = {}
    with TaskProgress(getattr(settings, "benchmark", "eval"), expected_tokens=settings.answer_tokens) as progress:

        def on_result(record: dict[str, Any]) -> None:
            k_n = counts.setdefault(record["policy"], [0, 0])
            k_n[0] += bool(record["passed"])
            k_n[1] += 1
            progress.advance("  ".join(f"{p} {k}/{n}" for p, (k, n) in counts.items()),
                             key=f"{record['task_id']} {record['policy']}", tokens=record.get("tokens"))

        def on_event(task_id: str, policy: str, event: dict[str, Any]) -> None:
            progress.event(f"{task_id} {policy}", event)

        try:
            return await runner(settings, backend=backend, sandbox=sandbox, on_result=on_result,
                                on_start=progress.start, on_event=on_event)
        finally:
            aclose, close = getattr(backend, "aclose", None), getattr(sandbox, "close", None)
            if aclose is not None:
                await aclose()
            if close is not None:
                close()


def _finish(outcome: Any, *, as_json: bool) -> None:
    from valueagent.eval.tables import policy_table, rich_table

    console = _console()
    console.print(rich_table(policy_table(outcome.summary), title=f"pass@1 and cost — {outcome.output_dir}"))
    msg = f"{outcome.written} written, {outcome.skipped} already done; report: {outcome.output_dir / 'report.md'}"
    console.print(msg + (" (a torn last line was redone)" if outcome.repaired else ""))
    for key, err in outcome.errors.items():
        console.print(f"[red]failed {key}: {err}")
    if as_json:
        typer.echo(json.dumps(outcome.summary, indent=2))


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with results.jsonl.")],
    reference: Annotated[str, typer.Option("--reference", help="Policy compared against the others.")] = "value",
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Bootstrap resamples.")] = 10_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print summary.json to stdout.")] = False,
) -> None:
    """(Re)write summary.json, samples.jsonl, report.md and the plots of a run (also of `valueagent run`)."""
    from valueagent.eval.report import write_run_outputs
    from valueagent.eval.tables import policy_table, rich_table

    try:
        summary = write_run_outputs(run_dir, reference=reference, n_boot=n_boot)
    except FileNotFoundError as exc:
        fail(str(exc))
    _console().print(rich_table(policy_table(summary), title=str(run_dir)))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))


def merge(
    shards: Annotated[list[Path], typer.Argument(help="Shard run directories: the same `eval humaneval` command "
                                                      "run with disjoint --task-ids.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="The merged run directory.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Rewrite a merged run already in --output-dir "
                                            "(e.g. after the shards went on).")] = False,
    reference: Annotated[str, typer.Option("--reference", help="Policy compared against the others.")] = "value",
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Bootstrap resamples.")] = 10_000,
) -> None:
    """Merge shard runs of one comparison into one run directory (records, summary, report); the shards are
    only read. Refuses shards of another model, precision, axis, seed or calibration, and a pair run twice."""
    from valueagent.eval.merge import MergeError, merge_runs
    from valueagent.eval.tables import policy_table, rich_table

    try:
        summary = merge_runs(shards, output_dir, overwrite=overwrite, reference=reference, n_boot=n_boot)
    except MergeError as exc:
        fail(str(exc))
    _console().print(rich_table(policy_table(summary), title=f"{output_dir} (merged from {len(shards)} shards)"))


def baseline(
    run: Annotated[Path, typer.Option("--run", help="The run directory to freeze.")],
    out: Annotated[Path, typer.Option("--out", help="Baseline file to write (evals/baselines/NAME.json).")],
) -> None:
    """Freeze a run's per-task outcomes (and its axis validation) as a regression baseline."""
    from valueagent.eval.regress import make_baseline

    try:
        data = make_baseline(run)
    except (FileNotFoundError, ZeroDivisionError) as exc:
        fail(f"cannot make a baseline from {run}: {exc}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    typer.echo(f"baseline of {len(data['policies'])} policies -> {out}")


def regress(
    baseline_file: Annotated[Path, typer.Option("--baseline", help="A baseline file (evals/baselines/).")],
    run: Annotated[Path, typer.Option("--run", help="The run directory to check.")],
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level of the paired test.")] = 0.05,
    max_drop: Annotated[float | None, typer.Option("--max-drop", help="Also fail when pass@1 drops by more "
                                                   "than this fraction, significant or not.")] = None,
    max_lost: Annotated[int | None, typer.Option("--max-lost", min=0, help="Also fail when a policy solved more "
                                                 "than this many of the common tasks fewer, significant or "
                                                 "not.")] = None,
    axis_path: Annotated[Path | None, typer.Option("--axis", help="Axis whose sidecar validation to check "
                                                   "(default: the run's config.json).")] = None,
    axis_tolerance: Annotated[float, typer.Option("--axis-tolerance", help="Allowed validation drop.")] = 0.02,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Exit 1 when a policy is significantly worse than the baseline or the axis validation dropped."""
    from valueagent.eval.regress import BaselineError, check_regression, load_baseline

    try:
        result = check_regression(load_baseline(baseline_file), run, alpha=alpha, max_drop=max_drop,
                                  max_lost=max_lost, axis_path=axis_path, axis_tolerance=axis_tolerance)
    except (BaselineError, FileNotFoundError, json.JSONDecodeError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for c in result.checks:
            mark = typer.style("REGRESSED", fg=typer.colors.RED) if c.regressed else "ok"
            typer.echo(f"{mark:>9}  {c.kind:6} {c.name}: {c.detail}")
        for note in result.notes:
            typer.echo(f"     note  {note}")
        typer.echo("no regression" if result.ok else "regression detected")
    raise typer.Exit(0 if result.ok else 1)


def compare(
    run_a: Annotated[Path, typer.Argument(help="The first run directory (A).")],
    run_b: Annotated[Path, typer.Argument(help="The second run directory (B); differences are B - A.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    labels: Annotated[str, typer.Option("--labels", help="Names of A and B in the tables (e.g. 0.5b,1.5b).")] = "A,B",
    output: Annotated[Path | None, typer.Option("--output", help="Also write the comparison JSON here and its "
                                                "Markdown beside it (.md).")] = None,
) -> None:
    """Paired statistics between two runs on their common tasks and policies, and each policy's edge over its
    matched-cost control in both runs with the difference of the edges (B - A)."""
    from valueagent.eval.compare import NoOverlapError, compare_runs, render_markdown

    names = [x.strip() for x in labels.split(",")]
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        fail(f"--labels {labels!r} must name A and B, two distinct labels separated by a comma (e.g. 0.5b,1.5b)")
    if output is not None and output.suffix != ".json":
        fail(f"--output {output} must end in .json (the Markdown goes beside it as .md)")
    try:
        result = compare_runs(run_a, run_b)
    except (NoOverlapError, FileNotFoundError) as exc:
        fail(str(exc))
    text = render_markdown(result, a_label=names[0], b_label=names[1])
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=1) + "\n")
        output.with_suffix(".md").write_text(text)
    typer.echo(json.dumps(result, indent=2) + "\n" if as_json else text, nl=False)


def _eval_command(name: str) -> Callable[..., None]:
    """``eval <name>``: :func:`run_benchmark` with the benchmark fixed (typer reads the copied signature)."""

    def command(**options: Any) -> None:
        run_benchmark(name, **options)

    signature = inspect.signature(run_benchmark, eval_str=True)
    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for p in signature.parameters.values() if p.name != "bench"])
    command.__annotations__ = {k: v for k, v in run_benchmark.__annotations__.items() if k != "bench"}
    command.__doc__ = (f"Run every policy on the same {name} tasks (its {BENCHMARKS[name].eval_split!r} split by "
                       "default) and write config, results, summary, samples, report.")
    command.__name__ = name
    return command


def register(app: typer.Typer) -> None:
    """Add ``eval`` (one command per benchmark, report, merge, baseline, regress) and the top-level ``compare``."""
    for name in BENCHMARKS:
        eval_app.command(name)(_eval_command(name))
    eval_app.command("report")(report)
    eval_app.command("merge")(merge)
    eval_app.command("baseline")(baseline)
    eval_app.command("regress")(regress)
    app.add_typer(eval_app, name="eval")
    app.command("compare")(compare)
