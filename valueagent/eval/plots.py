"""PNG plots of a run, drawn on matplotlib's Agg canvas (no pyplot, no global backend state).

- ``frontier.png``: pass@1 (Wilson 95% CI) against mean test runs and against mean tokens, per policy;
- ``value_traces.png``: the reference policy's value readings along the submitted attempt, passing vs
  failing tasks, and the distribution of the final reading by outcome;
- ``calibration.png``: reliability diagram of the reading's out-of-fold probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from valueagent.eval.records import RunResults, TaskRecord

__all__ = ["plot_calibration", "plot_frontier", "plot_value_traces", "write_plots"]

PASS, FAIL = "#2a9d4b", "#d1495b"


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def plot_frontier(summary: Mapping[str, Any], path: Path) -> Path:
    """pass@1 against test runs and tokens: the cost/success frontier of the policies."""
    fig = _figure(10, 4)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, label in ((axes[0], "test_runs_mean", "mean test runs per task"),
                           (axes[1], "tokens_mean", "mean generated tokens per task")):
        for name, s in summary["policies"].items():
            est = s.get("pass@1")
            if est is None or s.get(key) is None:
                continue
            y = 100 * est["estimate"]
            err = [[y - 100 * est["lo"]], [100 * est["hi"] - y]]
            ax.errorbar([s[key]], [y], yerr=err, fmt="o", capsize=3)
            ax.annotate(name, (s[key], y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pass@1 % (Wilson 95% CI)")
    fig.suptitle("Cost / success frontier")
    fig.savefig(path)
    return path


def _last_attempt(rec: TaskRecord) -> list[Mapping[str, Any]]:
    readings = [r for r in rec.trace if r.get("kind") in ("segment", "final")]
    if not readings:
        return []
    last = readings[-1].get("attempt")
    return [r for r in readings if r.get("attempt") == last]


def _reading(r: Mapping[str, Any]) -> float | None:
    x = r.get("value_norm", r.get("value"))
    return None if x is None else float(x)


def plot_value_traces(run: RunResults, policy: str, path: Path) -> Path | None:
    """Value readings along the submitted attempt (left) and the final reading by outcome (right)."""
    records = run.records(policy)
    if not any(r.value is not None for r in records):
        return None
    fig = _figure(10, 4)
    left, right = fig.subplots(1, 2)
    for rec in records:
        pts = [(float(r.get("position") or 0), v) for r in _last_attempt(rec)
               if r.get("kind") == "segment" and (v := _reading(r)) is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            left.plot(xs, ys, color=PASS if rec.passed else FAIL, alpha=0.35, lw=1)
    left.set_xlabel("tokens into the submitted attempt")
    left.set_ylabel("value reading (position-normalized)")
    left.set_title(f"{policy}: segment readings (green pass, red fail)")
    left.grid(alpha=0.3)
    finals = {True: [r.value for r in records if r.passed and r.value is not None],
              False: [r.value for r in records if not r.passed and r.value is not None]}
    data = [finals[True], finals[False]]
    labels = [f"pass (n={len(data[0])})", f"fail (n={len(data[1])})"]
    for i, (vals, color) in enumerate(zip(data, (PASS, FAIL), strict=True)):
        if vals:
            jitter = [i + 1 + 0.15 * ((k * 0.618) % 1 - 0.5) for k in range(len(vals))]
            right.scatter(jitter, vals, color=color, alpha=0.6, s=14)
            right.hlines(sum(vals) / len(vals), i + 0.75, i + 1.25, color="black")
    right.set_xticks([1, 2], labels)
    right.set_ylabel("final reading")
    right.set_title("final value reading by outcome (bar = mean)")
    right.grid(alpha=0.3, axis="y")
    fig.savefig(path)
    return path


def plot_calibration(summary: Mapping[str, Any], policy: str, path: Path) -> Path | None:
    """Reliability diagram: mean out-of-fold probability against the observed pass rate per bin."""
    cal = summary["reading"]["by_policy"].get(policy, {}).get("calibration")
    if not cal:
        return None
    bins = [b for b in cal["bins"] if b["count"]]
    fig = _figure(5, 4.5)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.plot([b["mean_prob"] for b in bins], [b["frac_positive"] for b in bins], "o-")
    for b in bins:
        ax.annotate(str(b["count"]), (b["mean_prob"], b["frac_positive"]), textcoords="offset points",
                    xytext=(4, -10), fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted P(pass) from the value reading (out of fold)")
    ax.set_ylabel("observed pass rate")
    br = cal["brier"]
    ax.set_title(f"{policy}: Brier {br['estimate']:.3f} (base rate {cal['brier_base_rate']:.3f})", fontsize=10)
    ax.grid(alpha=0.3)
    fig.savefig(path)
    return path


def write_plots(run: RunResults, summary: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """All plots that the data supports; returns ``{name: path}`` of those written."""
    out = Path(out_dir)
    ref = summary.get("reference", "value")
    policy = ref if ref in run.by_policy else next(
        (p for p in run.policies if any(r.value is not None for r in run.records(p))), None)
    written: dict[str, Path] = {}
    if summary["policies"]:
        written["frontier"] = plot_frontier(summary, out / "frontier.png")
    if policy is not None:
        for name, got in (("value_traces", plot_value_traces(run, policy, out / "value_traces.png")),
                          ("calibration", plot_calibration(summary, policy, out / "calibration.png"))):
            if got is not None:
                written[name] = got
    return written
