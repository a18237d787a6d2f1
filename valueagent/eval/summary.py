"""``summary.json``: per-policy pass@1 and cost, paired comparisons, and the value reading's quality.

Every interval is 95%. pass@1 uses the Wilson interval (one greedy-first run per task, so pass@1 is the
pass rate). Comparisons are *paired* on the tasks both policies finished: McNemar's exact test on the
discordant tasks, a percentile bootstrap over tasks of the pass-rate difference, and the same bootstrap
for the cost differences. p-values are also given Holm-adjusted over the comparisons of one reference.
``controls`` pairs each value-reading or steered policy with its control at matched cost
(:func:`control_pairs`), the same way, Holm-adjusted over those pairs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from valueagent.eval.reading import reading_quality
from valueagent.eval.records import READING_DEFINITION, RunResults, TaskRecord, load_results
from valueagent.stats import holm, paired_bootstrap_diff, paired_outcomes, wilson

__all__ = [
    "control_pairs",
    "SUMMARY_FILE",
    "SUMMARY_SCHEMA",
    "holm",
    "paired_comparison",
    "policy_stats",
    "summarize",
    "summarize_run",
    "write_summary",
]

SUMMARY_FILE = "summary.json"
SUMMARY_SCHEMA = "valueagent-eval-summary/2"
"""/2 added ``controls`` (each policy against its matched-cost control) and every policy's ``backtracks_total`` /
``backtracks_repeated``; readers of /1 files find them absent."""


def _mean(xs: Sequence[float]) -> float | None:
    return float(sum(xs) / len(xs)) if xs else None


def _est(e: Any) -> dict[str, float]:
    return {"estimate": e.estimate, "lo": e.lo, "hi": e.hi, "conf": e.conf}


def policy_stats(records: Sequence[TaskRecord]) -> dict[str, Any]:
    """pass@1 with its Wilson interval and the mean costs of one policy's records."""
    n = len(records)
    k = sum(r.passed for r in records)
    return {
        "n": n,
        "passed": k,
        "pass@1": _est(wilson(k, n)) if n else None,
        "test_runs_mean": _mean([r.test_runs for r in records]),
        "untested_frac": _mean([float(r.test_runs == 0) for r in records]),
        "tokens_mean": _mean([r.tokens for r in records]),
        "wall_s_mean": _mean([r.wall_s for r in records]),
        "backtracks_mean": _mean([r.backtracks for r in records]),
        "backtracks_total": sum(r.backtracks for r in records),
        "backtracks_repeated": sum(r.repeated_backtracks for r in records),
        "revisions_mean": _mean([r.revisions for r in records]),
        "errors": sum(r.error is not None for r in records),
    }


def control_pairs() -> tuple[tuple[str, str], ...]:
    """(policy that reads or steers along the axis, its control) as the policies declare them
    (``PolicySpec.controls``; plugins' too): the control spends the same kind of budget — the same gate at a
    random or log-prob signal, the unsteered always-test for the steered policies, the same search action."""
    from valueagent.agent.policies import control_pairs as declared

    return declared()


def paired_comparison(
    a: Mapping[str, TaskRecord], b: Mapping[str, TaskRecord], *, n_boot: int = 10_000, seed: int = 0
) -> dict[str, Any] | None:
    """``a`` against ``b`` on their common task ids (differences are ``a - b``); None without overlap."""
    common = sorted(set(a) & set(b))
    if not common:
        return None
    ra, rb = [a[t] for t in common], [b[t] for t in common]
    pa, pb = [r.passed for r in ra], [r.passed for r in rb]
    pc = paired_outcomes(pa, pb, n_boot=n_boot, seed=seed)

    def diff(key: str) -> dict[str, float]:
        xa = [float(getattr(r, key)) for r in ra]
        xb = [float(getattr(r, key)) for r in rb]
        return _est(paired_bootstrap_diff(xa, xb, n_boot=n_boot, seed=seed))

    return {
        "n_common": len(common),
        "passed_a": sum(pa),
        "passed_b": sum(pb),
        "pass_diff": _est(pc.delta),
        "a_only": pc.wins,
        "b_only": pc.losses,
        "mcnemar_p": pc.p_value,
        "test_runs_diff": diff("test_runs"),
        "tokens_diff": diff("tokens"),
    }


def _paired_rows(run: RunResults, pairs: Sequence[tuple[str, str]], *, n_boot: int, seed: int) -> list[dict[str, Any]]:
    """:func:`paired_comparison` of each ``(a, b)`` pair both of whose policies the run holds, with the McNemar
    p-values Holm-adjusted over these rows."""
    rows: list[dict[str, Any]] = []
    for a, b in pairs:
        if a in run.by_policy and b in run.by_policy:
            pc = paired_comparison(run.by_policy[a], run.by_policy[b], n_boot=n_boot, seed=seed)
            if pc is not None:
                rows.append({"a": a, "b": b, **pc})
    for row, p in zip(rows, holm([r["mcnemar_p"] for r in rows]), strict=True):
        row["mcnemar_p_holm"] = p
    return rows


def summarize(
    run: RunResults, *, reference: str = "value", n_boot: int = 10_000, seed: int = 0
) -> dict[str, Any]:
    """The summary of a run (see the module doc); ``reference`` is compared against every other policy."""
    policies = run.policies
    others = [(reference, other) for other in policies if other != reference] if reference in run.by_policy else []
    comparisons = _paired_rows(run, others, n_boot=n_boot, seed=seed)
    controls = _paired_rows(run, control_pairs(), n_boot=n_boot, seed=seed)
    return {
        "schema": SUMMARY_SCHEMA,
        "source": run.source,
        "n_tasks": len(run.task_ids()),
        "n_common_tasks": len(run.common_tasks()),
        "corrupt_lines": run.corrupt_lines,
        "duplicates": run.duplicates,
        "policies": {p: policy_stats(run.records(p)) for p in policies},
        "reference": reference,
        "paired": comparisons,
        "controls": controls,
        "reading": {
            "definition": READING_DEFINITION,
            "by_policy": {p: reading_quality(run.records(p), n_boot=min(n_boot, 2000), seed=seed)
                          for p in policies},
        },
        "settings": {"n_boot": n_boot, "seed": seed, "conf": 0.95},
    }


def write_summary(run_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    """Write ``run_dir/summary.json`` atomically."""
    path = Path(run_dir) / SUMMARY_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def summarize_run(
    run_dir: str | Path, *, reference: str = "value", n_boot: int = 10_000, seed: int = 0
) -> dict[str, Any]:
    """Load ``run_dir/results.jsonl``, summarize it and write ``summary.json``; returns the summary."""
    summary = summarize(load_results(run_dir), reference=reference, n_boot=n_boot, seed=seed)
    write_summary(run_dir, summary)
    return summary
