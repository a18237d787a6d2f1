"""Replays of two models' banks, figure for figure: does a better value axis make a better agent?

Each replay already pairs a policy with its controls on one model. Across models the tasks are the same, so
the question "did the stronger axis help?" is a paired difference of differences: per task,
``(value - control)`` on the second model minus the same on the first, with a bootstrap interval and an
exact sign-flip test. A policy's own change across models (value-rank on 1.5B against value-rank on 0.5B)
is reported beside it, but it mixes the model's strength with its axis; the difference of differences
against a control at matched cost is what isolates the reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from valueagent.bank.report import plot_frontier
from valueagent.bank.store import BankError
from valueagent.runtime.generation import precision_label
from valueagent.stats import difference_of_differences, holm, mcnemar_exact, paired_bootstrap_diff

# (policy read by the axis, its control at matched cost): same action, same tokens and test budget.
AXIS_PAIRS = (
    ("value-top1", "random-top1"), ("value-top1", "logprob-top1"),
    ("value-rank", "random-rank"), ("value-rank", "logprob-rank"),
    ("value-seq", "random-seq"), ("value-seq", "logprob-seq"),
    ("value-stop", "random-stop"), ("value-stop", "confidence-stop"),
    ("probe-top1", "random-top1"), ("probe-rank", "random-rank"),
)
SIDE_SIGNALS = ("value", "value-lowest", "probe", "value+logprob", "logprob", "confidence", "entropy", "random")
SIDE_POLICIES = ("single", "always-test", "oracle", "value-top1", "logprob-top1", "random-top1", "value-rank",
                 "logprob-rank", "random-rank", "value-seq", "logprob-seq", "random-seq", "value-stop",
                 "confidence-stop", "random-stop", "order-test")


def _outcomes(result: Mapping[str, Any], policy: str) -> dict[str, tuple[bool, float, float]]:
    return {row[0]: (bool(row[1]), float(row[2]), float(row[3])) for row in result["per_task"].get(policy, [])}


def check_comparable(results: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[str]:
    """The eval task ids every replay shares, or an error naming what differs and the fix."""
    if len(results) < 2 or len(results) != len(labels):
        raise BankError("compare needs two or more replays, one label each (--labels a,b)")
    ids = [[row[0] for row in r["per_task"]["single"]] for r in results]
    for label, other in zip(labels[1:], ids[1:], strict=True):
        if sorted(other) != sorted(ids[0]):
            raise BankError(f"replay {label} scores other eval tasks than {labels[0]} ({len(other)} vs {len(ids[0])}): "
                            "replay both banks with the same --calibration-ids (default: HumanEval's frozen split)")
    return sorted(ids[0])


def _within(result: Mapping[str, Any], policy: str, control: str, ids: Sequence[str]) -> dict[str, Any] | None:
    a, b = _outcomes(result, policy), _outcomes(result, control)
    if not a or not b:
        return None
    x = np.asarray([a[t][0] for t in ids], float)
    y = np.asarray([b[t][0] for t in ids], float)
    diff = paired_bootstrap_diff(x, y)
    mc = mcnemar_exact(x.astype(bool), y.astype(bool))
    return {"delta": diff.estimate, "ci": [diff.lo, diff.hi], "wins": mc.b10, "losses": mc.b01, "p": mc.p_value,
            "tokens": [float(np.mean([a[t][1] for t in ids])), float(np.mean([b[t][1] for t in ids]))],
            "test_runs": [float(np.mean([a[t][2] for t in ids])), float(np.mean([b[t][2] for t in ids]))]}


def _change(before: np.ndarray, after: np.ndarray) -> dict[str, Any]:
    """One policy's own change across models: pass-rate points, tasks gained and lost, McNemar p."""
    mc = mcnemar_exact(after, before)
    delta = float((after.astype(float) - before.astype(float)).mean())
    return {"delta": delta, "gained": mc.b10, "lost": mc.b01, "p": mc.p_value}


def axis_effect(base: Mapping[str, Any], other: Mapping[str, Any], ids: Sequence[str]) -> list[dict[str, Any]]:
    """For each (axis policy, control) pair scored in both replays: its edge over the control on each model
    and the per-task difference of those edges (other minus base), with the policy's and the control's own
    change across models beside it. The Δ p-values are also Holm-adjusted over the pairs."""
    rows: list[dict[str, Any]] = []
    for policy, control in AXIS_PAIRS:
        w0, w1 = _within(base, policy, control, ids), _within(other, policy, control, ids)
        if w0 is None or w1 is None:
            continue
        p0, c0, p1, c1 = (np.asarray([_outcomes(r, name)[t][0] for t in ids], bool)
                          for r, name in ((base, policy), (base, control), (other, policy), (other, control)))
        rows.append({
            "policy": policy, "control": control, "base": w0, "other": w1,
            "difference_of_differences": difference_of_differences(p0, c0, p1, c1),
            "policy_change": _change(p0, p1), "control_change": _change(c0, c1),
        })
    for row, p in zip(rows, holm([r["difference_of_differences"]["p"] for r in rows]), strict=True):
        row["difference_of_differences"]["p_holm"] = p  # over the pairs of this comparison
    return rows


def compare(results: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, Any]:
    """Side-by-side signals, policies and headline answers of every replay; the axis effect of each later
    replay against the first."""
    ids = check_comparable(results, labels)
    return {
        "labels": list(labels),
        "replays": [{"label": lab, "bank": r["bank"], "manifest": r["manifest"], "split": r["split"]}
                    for lab, r in zip(labels, results, strict=True)],
        "eval_tasks": len(ids),
        "signals": {lab: {s: r["signals"][s] for s in SIDE_SIGNALS if s in r["signals"]}
                    for lab, r in zip(labels, results, strict=True)},
        "policies": {lab: {p: r["policies"][p] for p in SIDE_POLICIES if p in r["policies"]}
                     for lab, r in zip(labels, results, strict=True)},
        "answers": {lab: r["answers"] for lab, r in zip(labels, results, strict=True)},
        "axis_effect": {lab: axis_effect(results[0], r, ids) for lab, r in zip(labels[1:], results[1:], strict=True)},
    }


def shared_limits(results: Sequence[Mapping[str, Any]]) -> tuple[tuple[float, float], tuple[float, float],
                                                                    tuple[float, float]]:
    """Axis limits (tokens, test runs, pass@1) that hold every replay's frontier, so their PNGs compare."""
    tok, runs, acc = [], [], []
    for r in results:
        for v in (*r["frontier"].values(), *r["policies"].values()):
            tok.append(v["tokens"])
            runs.append(v["test_runs"])
            acc.append(v["pass_at_1"])

    def pad(lo: float, hi: float) -> tuple[float, float]:
        m = 0.04 * (hi - lo or 1.0)
        return lo - m, hi + m

    return pad(0.0, max(tok)), pad(0.0, max(runs)), pad(min(acc), max(acc))


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def render_markdown(cmp: Mapping[str, Any]) -> str:
    labels = cmp["labels"]
    lines = [f"# Replays compared: {' vs '.join(labels)} ({cmp['eval_tasks']} eval tasks, same tasks)", ""]
    for rep in cmp["replays"]:
        m = rep["manifest"]
        lines.append(f"- **{rep['label']}**: `{rep['bank']}`: {m['model_id']} ({m['weights']}; "
                     f"{precision_label(m['dtype'], m['quantization'], m.get('backend'))}), axis layer "
                     f"{m['axis_layer']}, N={m['samples']}, calibration {rep['split']['calibration']} tasks")
    lines += ["", "## Signals: does the reading pick the passing sample? (fresh samples, eval split)", "",
              "| signal | " + " | ".join(f"{lab} AUROC [95% CI] | {lab} within-task | {lab} top-1 %"
                                        for lab in labels) + " |",
              "|---|" + "---|---|---|" * len(labels)]
    for s in SIDE_SIGNALS:
        cells = []
        for lab in labels:
            q = cmp["signals"][lab].get(s)
            if q is None:
                cells += ["—", "—", "—"]
                continue
            au = "—" if q["auroc"] is None else f"{q['auroc']:.3f} [{q['auroc_ci'][0]:.3f}, {q['auroc_ci'][1]:.3f}]"
            wt = "—" if q["within_task_auroc"] is None else f"{q['within_task_auroc']:.3f}"
            cells += [au, wt, f"{100 * q['top1']['pass_at_1']:.1f}"]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", "## Policies (pass@1 % [95% CI], tokens, test runs)", "",
              "| policy | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for p in SIDE_POLICIES:
        cells = []
        for lab in labels:
            q = cmp["policies"][lab].get(p)
            cells.append("—" if q is None else f"{100 * q['pass_at_1']:.1f} [{100 * q['ci'][0]:.1f}, "
                         f"{100 * q['ci'][1]:.1f}], {q['tokens']:.0f} tok, {q['test_runs']:.2f} runs")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    lines += ["", "## Headline answers", ""]
    for lab in labels:
        a = cmp["answers"][lab]
        runs = a["test_runs_to_match_always_test"]
        need = ", ".join(f"{s} {'never' if v is None else format(v['test_runs'], '.2f')}" for s, v in runs.items())
        best = a["best_at_token_budgets"].get("2x always-test")
        lines.append(f"- **{lab}**: best ordering signal (within-task AUROC) "
                     f"{a['signal_order'][0]['signal']}; always-test {100 * (a['always_test_pass_at_1'] or 0):.1f}%; "
                     f"test runs a ranking needs to reach it: {need}; best within 2x always-test tokens: "
                     + ("—" if not best else f"{best['policy']} {100 * best['pass_at_1']:.1f}%"))
    for lab, rows in cmp["axis_effect"].items():
        lines += ["", f"## Did the axis help more on {lab} than on {labels[0]}? (paired over the same tasks)", "",
                  f"Edge = policy minus its control in pass@1 points on one model (McNemar p); Δedge = {lab}'s edge "
                  f"minus {labels[0]}'s, per task (bootstrap 95% CI, exact sign-flip p, Holm-adjusted over the "
                  f"{len(rows)} pairs). A positive Δedge with an interval above 0 would say the stronger reading made "
                  "the better agent.", "",
                  f"| policy vs control | {labels[0]} edge (p) | {lab} edge (p) | Δedge [95% CI] | p (Holm) | "
                  f"policy {labels[0]}→{lab} (gained/lost) | control {labels[0]}→{lab} (gained/lost) | "
                  f"tokens policy/control ({labels[0]}; {lab}) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            d, b, o, pc, cc = (r["difference_of_differences"], r["base"], r["other"], r["policy_change"],
                               r["control_change"])
            lines.append(f"| {r['policy']} vs {r['control']} | {_pts(b['delta'])} ({b['p']:.2f}) | "
                         f"{_pts(o['delta'])} ({o['p']:.2f}) | {_pts(d['delta'])} [{_pts(d['ci'][0])}, "
                         f"{_pts(d['ci'][1])}] | {d['p']:.2f} ({d['p_holm']:.2f}) | "
                         f"{_pts(pc['delta'])} ({pc['gained']}/{pc['lost']}) | "
                         f"{_pts(cc['delta'])} ({cc['gained']}/{cc['lost']}) | "
                         f"{b['tokens'][0]:.0f}/{b['tokens'][1]:.0f}; {o['tokens'][0]:.0f}/{o['tokens'][1]:.0f} |")
    return "\n".join(lines) + "\n"


def write_comparison(results: Sequence[Mapping[str, Any]], labels: Sequence[str], output: Path) -> dict[str, Any]:
    """``output`` (JSON), ``.md`` beside it, and ``<label>.png`` per replay, every PNG on the same axes."""
    import json

    cmp = compare(results, labels)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(json.dumps(cmp, indent=1) + "\n")
    tmp.replace(output)
    output.with_suffix(".md").write_text(render_markdown(cmp))
    limits = shared_limits(results)
    for lab, r in zip(labels, results, strict=True):
        plot_frontier(r, output.parent / f"{lab}.png", limits=limits)
    return cmp


__all__ = ["AXIS_PAIRS", "axis_effect", "check_comparable", "compare", "render_markdown",
           "shared_limits", "write_comparison"]
