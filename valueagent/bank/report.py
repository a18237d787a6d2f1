"""Render a replay: text tables for the terminal, JSON and a frontier PNG (pass@1 against tokens and against
test runs, every signal and control on the same axes)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from valueagent.runtime.generation import precision_label

FRONTIER_SIGNALS = ("value", "logprob", "confidence", "probe", "value+logprob", "random")
MAIN = ("single", "always-test", "oracle", "value-rank", "logprob-rank", "confidence-rank", "probe-rank",
        "value+logprob-rank", "random-rank", "order-rank", "value-top1", "logprob-top1", "confidence-top1",
        "probe-top1", "random-top1", "value-seq", "logprob-seq", "confidence-seq", "probe-seq", "random-seq",
        "value-stop", "confidence-stop", "random-stop", "order-test")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def policy_rows(result: Mapping[str, Any]) -> list[str]:
    rows = ["| policy | pass@1 % [95% CI] | tokens | test runs | vs random (Δ pts, p) | vs logprob (Δ pts, p) |",
            "|---|---|---|---|---|---|"]
    pol, paired = result["policies"], result["paired"]
    for name in [n for n in MAIN if n in pol] + [n for n in pol if n not in MAIN]:
        p = pol[name]
        cells = []
        for rival in ("random", "logprob"):
            action = name.rpartition("-")[2]
            q = paired.get(name, {}).get(f"{rival}-{action}")
            cells.append("—" if q is None else f"{100 * q['delta']:+.1f} ({q['p']:.2f})")
        rows.append(f"| {name} | {_pct(p['pass_at_1'])} [{_pct(p['ci'][0])}, {_pct(p['ci'][1])}] | "
                    f"{p['tokens']:.0f} | {p['test_runs']:.2f} | {cells[0]} | {cells[1]} |")
    return rows


def signal_rows(result: Mapping[str, Any]) -> list[str]:
    rows = ["| signal | AUROC (pooled) [95% CI] | within-task AUROC | top-1 of N pass@1 % [95% CI] |",
            "|---|---|---|---|"]
    for name, q in result["signals"].items():
        au = "—" if q["auroc"] is None else f"{q['auroc']:.3f} [{q['auroc_ci'][0]:.3f}, {q['auroc_ci'][1]:.3f}]"
        wt = "—" if q["within_task_auroc"] is None else f"{q['within_task_auroc']:.3f}"
        t = q["top1"]
        rows.append(f"| {name} | {au} | {wt} | {_pct(t['pass_at_1'])} [{_pct(t['ci'][0])}, {_pct(t['ci'][1])}] |")
    return rows


def render_text(result: Mapping[str, Any]) -> str:
    m = result["manifest"]
    head = (f"bank {result['bank']}: {m['model_id']} ({m['weights']}; "
            f"{precision_label(m['dtype'], m['quantization'], m.get('backend'))}), N={m['samples']}, "
            f"calibration {result['split']['calibration']} tasks, eval {result['split']['eval']} tasks, "
            f"replayed in {result['replay_s']} s")
    a = result["answers"]
    lines = [head, "", *signal_rows(result), "", *policy_rows(result), "",
             f"always-test: {_pct(a['always_test_pass_at_1'] or 0)}% at {a['always_test_tokens'] or 0:.0f} tokens"]
    for s, v in a["test_runs_to_match_always_test"].items():
        lines.append(f"  {s}-rank reaches it with " + ("never" if v is None else f"{v['test_runs']:.2f} test runs "
                                                       f"({_pct(v['pass_at_1'])}%)"))
    for name, b in a.get("best_at_token_budgets", {}).items():
        if b:
            lines.append(f"best pass@1 within {name} tokens ({b['budget']:.0f}): {b['policy']} "
                         f"{_pct(b['pass_at_1'])}% [{_pct(b['ci'][0])}, {_pct(b['ci'][1])}] at {b['tokens']:.0f} "
                         f"tokens, {b['test_runs']:.2f} test runs")
    return "\n".join(lines)


Limits = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]


def plot_frontier(result: Mapping[str, Any], path: Path, title: str | None = None,
                  limits: Limits | None = None) -> Path:
    """The two frontier panels; ``limits`` (tokens, test runs, pass@1) puts several replays on the same axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fr, pol = result["frontier"], result["policies"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for sig in FRONTIER_SIGNALS:
        pts = sorted((v["tokens"], v["pass_at_1"]) for k, v in fr.items() if k.startswith(f"{sig}-rank|k="))
        if pts:
            ax1.plot(*zip(*pts, strict=True), marker="o", ms=3, label=f"{sig}-rank (k=1..N)",
                     ls="--" if sig == "random" else "-")
        pts = sorted((v["test_runs"], v["pass_at_1"]) for k, v in fr.items() if k.startswith(f"{sig}-rank|tests<="))
        if pts:
            ax2.plot(*zip(*pts, strict=True), marker="o", ms=3, label=f"{sig}-rank (tests<=m)",
                     ls="--" if sig == "random" else "-")
    pts = sorted((v["tokens"], v["pass_at_1"]) for k, v in fr.items() if k.startswith("oracle|k="))
    ax1.plot(*zip(*pts, strict=True), color="grey", ls=":", label="oracle (any of k)")
    pts = sorted((v["test_runs"], v["pass_at_1"]) for k, v in fr.items() if k.startswith("always-test|tests<="))
    ax2.plot(*zip(*pts, strict=True), color="black", marker="s", ms=3, label="always-test (greedy, then samples)")
    for name, marker in (("single", "*"), ("always-test", "s"), ("value-seq", "^"), ("logprob-seq", "v"),
                         ("value-stop", "D"), ("confidence-stop", "d"), ("random-stop", "x"), ("order-test", "P")):
        if name in pol:
            p = pol[name]
            ax1.scatter(p["tokens"], p["pass_at_1"], marker=marker, s=50, zorder=5, label=name)
            ax2.scatter(p["test_runs"], p["pass_at_1"], marker=marker, s=50, zorder=5)
    ax1.set_xlabel("generated tokens per task (mean)")
    ax2.set_xlabel("visible-test runs per task (mean)")
    for ax in (ax1, ax2):
        ax.set_ylabel("pass@1 (hidden tests, eval split)")
        ax.grid(alpha=0.3)
    if limits is not None:
        ax1.set_xlim(*limits[0])
        ax2.set_xlim(*limits[1])
        ax1.set_ylim(*limits[2])
        ax2.set_ylim(*limits[2])
    ax1.legend(fontsize=6, loc="lower right")
    ax2.legend(fontsize=6, loc="lower right")
    m = result["manifest"]
    fig.suptitle(title or f"{m['model_id']} ({m['quantization'] or m['dtype']}), N={m['samples']}, "
                 f"eval {result['split']['eval']} tasks", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(result: Mapping[str, Any], output: Path) -> None:
    """``output`` (JSON), ``output`` with ``.png`` (the frontier) and ``.md`` (the tables)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(output)
    plot_frontier(result, output.with_suffix(".png"))
    output.with_suffix(".md").write_text(render_text(result) + "\n")
