"""Regression evals: compare a run against a committed baseline file and fail on a significant drop.

A *baseline* (``evals/baselines/*.json``, made by :func:`make_baseline` from a run directory) keeps each
policy's per-task outcomes, so the check is *paired* on the tasks both finished: a policy regresses when
it solved fewer of the common tasks and McNemar's exact two-sided p is below ``alpha`` (optionally also
when it solved more than ``max_lost`` tasks fewer, or the drop exceeds the fraction ``max_drop``, even
without significance: a suite of a few tasks never reaches it, four tasks give p >= 0.125). The
value axis regresses when a higher-is-better validation figure of its artifact (the JSON sidecar's
``validation``: keys matching ``axis_metrics`` and none of ``axis_controls``) fell by more than
``axis_tolerance``.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from valueagent.eval.config import read_config
from valueagent.eval.records import load_results
from valueagent.stats import mcnemar_exact, wilson

__all__ = [
    "BASELINE_SCHEMA",
    "DEFAULT_AXIS_CONTROLS",
    "DEFAULT_AXIS_METRICS",
    "BaselineError",
    "Check",
    "RegressionReport",
    "axis_validation_of",
    "check_regression",
    "flatten_numbers",
    "load_baseline",
    "make_baseline",
]

BASELINE_SCHEMA = "valueagent-baseline/1"
DEFAULT_AXIS_METRICS = ("*auroc*", "*accuracy*", "*win_rate*", "*pairwise*")
DEFAULT_AXIS_CONTROLS = ("*random*", "*position*", "*logprob_auroc*", "*logprob_matched*")
"""Validation keys that are controls (random directions, position, log-probability), not axis quality."""


class BaselineError(ValueError):
    """The baseline file is missing, malformed, or shares nothing with the run."""


@dataclass(frozen=True, kw_only=True)
class Check:
    """One comparison against the baseline; ``regressed`` decides the exit code."""

    kind: Literal["pass@1", "axis"]
    name: str
    baseline: float | None
    current: float | None
    regressed: bool
    detail: str
    n: int | None = None
    p_value: float | None = None


@dataclass(frozen=True, kw_only=True)
class RegressionReport:
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(c.regressed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks], "notes": list(self.notes)}


def flatten_numbers(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested mappings as ``{"a.b.c": x}`` (booleans and lists are skipped)."""
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_numbers(value, name + "."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def axis_validation_of(path: str | Path) -> dict[str, Any]:
    """``validation`` of an axis artifact, read from its JSON sidecar (``X.safetensors`` -> ``X.json``)."""
    p = Path(path)
    sidecar = p if p.suffix == ".json" else p.with_suffix(".json")
    if not sidecar.is_file():
        raise FileNotFoundError(f"no axis sidecar at {sidecar}; pass the .safetensors axis whose .json sits beside it")
    return dict(json.loads(sidecar.read_text(encoding="utf-8")).get("validation") or {})


def make_baseline(run_dir: str | Path) -> dict[str, Any]:
    """A baseline record from a finished run directory (per-policy outcomes by task, axis validation)."""
    run = load_results(run_dir)
    config = read_config(run_dir) or {}
    policies = {}
    for name in run.policies:
        recs = run.records(name)
        k = sum(r.passed for r in recs)
        e = wilson(k, len(recs))
        policies[name] = {
            "n": len(recs), "passed": k, "pass@1": {"estimate": e.estimate, "lo": e.lo, "hi": e.hi},
            "test_runs_mean": sum(r.test_runs for r in recs) / len(recs),
            "tokens_mean": sum(r.tokens for r in recs) / len(recs),
            "outcomes": {r.task_id: r.passed for r in recs},
        }
    return {
        "schema": BASELINE_SCHEMA,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source_run": str(run_dir),
        "command": config.get("command"),
        "model": config.get("model"),
        "axis": config.get("axis"),
        "dataset": {k: v for k, v in (config.get("dataset") or {}).items() if k != "task_ids"},
        "seeds": config.get("seeds"),
        "git": config.get("git"),
        "policies": policies,
    }


def load_baseline(path: str | Path) -> dict[str, Any]:
    """Read and check a baseline file."""
    p = Path(path)
    if not p.is_file():
        raise BaselineError(f"no baseline at {p}; make one with `valueagent eval baseline --run DIR --out {p}`")
    data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise BaselineError(f"{p} is not a valueagent baseline (a JSON {type(data).__name__}, not an object)")
    if data.get("schema") != BASELINE_SCHEMA or not isinstance(data.get("policies"), Mapping):
        raise BaselineError(f"{p} is not a valueagent baseline (schema {data.get('schema')!r}, "
                            f"expected {BASELINE_SCHEMA!r})")
    return data


def _policy_check(name: str, base: Mapping[str, bool], cur: Mapping[str, bool], alpha: float,
                  max_drop: float | None, max_lost: int | None) -> Check | None:
    common = sorted(set(base) & set(cur))
    if not common:
        return None
    b, c = [bool(base[t]) for t in common], [bool(cur[t]) for t in common]
    n, kb, kc = len(common), sum(b), sum(c)
    p = mcnemar_exact(c, b).p_value
    significant = kc < kb and p < alpha
    too_many = max_lost is not None and kb - kc > max_lost
    too_far = max_drop is not None and (kb - kc) / n > max_drop
    why = ("significantly worse" if significant else f"{kb - kc} tasks lost, above --max-lost {max_lost}"
           if too_many else "drop above --max-drop" if too_far else "no significant drop")
    return Check(kind="pass@1", name=name, baseline=kb / n, current=kc / n, n=n, p_value=p,
                 regressed=significant or too_many or too_far,
                 detail=f"{kc}/{n} vs baseline {kb}/{n} on common tasks, McNemar p={p:.3g}: {why}")


def _axis_checks(base: Mapping[str, Any], cur: Mapping[str, Any], patterns: Sequence[str],
                 controls: Sequence[str], tolerance: float) -> list[Check]:
    fb, fc = flatten_numbers(base), flatten_numbers(cur)

    def matches(key: str, pats: Sequence[str]) -> bool:
        return any(fnmatch.fnmatch(key.lower(), pat) for pat in pats)

    checks = []
    for key in sorted(fb):
        if key not in fc or not matches(key, patterns) or matches(key, controls):
            continue
        drop = fb[key] - fc[key]
        checks.append(Check(kind="axis", name=key, baseline=fb[key], current=fc[key], regressed=drop > tolerance,
                            detail=f"{fc[key]:.4g} vs baseline {fb[key]:.4g} (tolerance {tolerance:g})"))
    return checks


def check_regression(
    baseline: Mapping[str, Any],
    run_dir: str | Path,
    *,
    alpha: float = 0.05,
    max_drop: float | None = None,
    max_lost: int | None = None,
    axis_path: str | Path | None = None,
    axis_metrics: Sequence[str] = DEFAULT_AXIS_METRICS,
    axis_controls: Sequence[str] = DEFAULT_AXIS_CONTROLS,
    axis_tolerance: float = 0.02,
) -> RegressionReport:
    """Check ``run_dir`` against ``baseline`` (see the module doc). ``BaselineError`` when nothing overlaps.

    ``max_lost`` counts tasks net (baseline passes minus current passes on the common tasks), so a rule
    such as "one task may flip, two fail" holds whatever the suite's size.

    The run's axis validation comes from ``axis_path``'s sidecar when given, else from its config.json.
    """
    run = load_results(run_dir)
    checks: list[Check] = []
    notes: list[str] = []
    for name, spec in baseline["policies"].items():
        if name not in run.by_policy:
            notes.append(f"policy {name} is in the baseline but not in the run: not checked")
            continue
        cur = {t: r.passed for t, r in run.by_policy[name].items()}
        check = _policy_check(name, spec.get("outcomes") or {}, cur, alpha, max_drop, max_lost)
        if check is None:
            notes.append(f"policy {name}: no tasks in common with the baseline")
        else:
            checks.append(check)
    if not checks:
        raise BaselineError(f"the run {run_dir} shares no (policy, task) with the baseline "
                            f"(baseline policies {sorted(baseline['policies'])}, run {run.policies})")
    config = read_config(run_dir) or {}
    base_val = (baseline.get("axis") or {}).get("validation") or {}
    cur_val = axis_validation_of(axis_path) if axis_path else (config.get("axis") or {}).get("validation") or {}
    axis_checks = _axis_checks(base_val, cur_val, axis_metrics, axis_controls, axis_tolerance)
    if base_val and not axis_checks:
        notes.append("no axis validation figure in common with the baseline: axis not checked")
    base_sha, cur_sha = (baseline.get("axis") or {}).get("sha256"), (config.get("axis") or {}).get("sha256")
    if base_sha and cur_sha and base_sha != cur_sha:
        notes.append(f"the axis changed (sha256 {base_sha[:12]} -> {cur_sha[:12]})")
    return RegressionReport(checks=tuple(checks + axis_checks), notes=tuple(notes))
