"""The summary's tables as rows of strings, rendered as Markdown (report) or rich tables (terminal)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Table", "edge_table", "markdown", "paired_table", "policy_table", "reading_table", "rich_table"]

Table = tuple[list[str], list[list[str]]]


def _pct(e: Mapping[str, float] | None) -> str:
    if not e:
        return "-"
    return f"{100 * e['estimate']:.1f} [{100 * e['lo']:.1f}, {100 * e['hi']:.1f}]"


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(e: Mapping[str, float] | None, digits: int = 2, scale: float = 1.0) -> str:
    if not e:
        return "-"
    d = digits
    return f"{scale * e['estimate']:+.{d}f} [{scale * e['lo']:+.{d}f}, {scale * e['hi']:+.{d}f}]"


def _p(p: float | None) -> str:
    return "-" if p is None else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _repeated(s: Mapping[str, Any]) -> str:
    """Backtracks that resampled the dropped text, of all backtracks (``-`` in summaries that predate it)."""
    total, rep = s.get("backtracks_total"), s.get("backtracks_repeated")
    return "-" if total is None or rep is None else f"{rep}/{total}"


def policy_table(summary: Mapping[str, Any]) -> Table:
    """One row per policy: pass@1 (%, Wilson 95% CI) and mean costs."""
    head = ["policy", "n", "pass@1 % [95% CI]", "test runs", "untested %", "tokens", "wall s", "backtracks",
            "repeated", "revisions"]
    rows = []
    for name, s in summary["policies"].items():
        untested = s.get("untested_frac")
        rows.append([
            name, str(s["n"]), _pct(s["pass@1"]), _num(s["test_runs_mean"]),
            "-" if untested is None else f"{100 * untested:.0f}", _num(s["tokens_mean"], 0),
            _num(s["wall_s_mean"], 1), _num(s["backtracks_mean"]), _repeated(s), _num(s["revisions_mean"]),
        ])
    return head, rows


def paired_table(comparisons: Sequence[Mapping[str, Any]], *, a_label: str = "a", b_label: str = "b") -> Table:
    """One row per comparison: discordant counts, pass-rate difference (points) with CI, p-values, costs."""
    head = ["comparison", "n", f"{a_label} only", f"{b_label} only", "Δ pass pts [95% CI]", "McNemar p",
            "Holm p", "Δ test runs [CI]", "Δ tokens [CI]"]
    rows = []
    for c in comparisons:
        rows.append([
            f"{c['a']} vs {c['b']}", str(c["n_common"]), str(c["a_only"]), str(c["b_only"]),
            _ci(c["pass_diff"], 1, 100.0), _p(c["mcnemar_p"]), _p(c.get("mcnemar_p_holm")),
            _ci(c["test_runs_diff"]), _ci(c["tokens_diff"], 0),
        ])
    return head, rows


def edge_table(edges: Sequence[Mapping[str, Any]], *, a_label: str = "A", b_label: str = "B") -> Table:
    """One row per (policy, control): its edge in each run, the difference of the edges, their costs."""
    head = ["policy vs control", "n", f"edge in {a_label} pts (wins/losses, p)",
            f"edge in {b_label} pts (wins/losses, p)",
            f"Δedge {b_label} - {a_label} pts [95% CI]", "sign-flip p", "Holm p",
            f"tokens policy/control ({a_label}; {b_label})"]
    rows = []
    for r in edges:
        d, ea, eb = r["difference_of_differences"], r["edge_a"], r["edge_b"]
        rows.append([
            f"{r['policy']} vs {r['control']}", str(r["n_common"]),
            f"{100 * ea['delta']:+.1f} ({ea['wins']}/{ea['losses']}, {_p(ea['p'])})",
            f"{100 * eb['delta']:+.1f} ({eb['wins']}/{eb['losses']}, {_p(eb['p'])})",
            _ci({"estimate": d["delta"], "lo": d["ci"][0], "hi": d["ci"][1]}, 1, 100.0), _p(d["p"]), _p(d["p_holm"]),
            f"{ea['tokens'][0]:.0f}/{ea['tokens'][1]:.0f}; {eb['tokens'][0]:.0f}/{eb['tokens'][1]:.0f}",
        ])
    return head, rows


def reading_table(summary: Mapping[str, Any]) -> Table:
    """Per policy: how well the final value reading predicts success, against log-probability."""
    head = ["policy", "n (passed)", "value AUROC [95% CI]", "logprob AUROC [95% CI]", "Brier [95% CI]",
            "base-rate Brier", "status"]
    rows = []
    for name, q in summary["reading"]["by_policy"].items():
        cal = q.get("calibration") or {}
        rows.append([
            name, f"{q['n']} ({q['n_passed']})", _auc(q.get("value_auroc")), _auc(q.get("logprob_auroc")),
            _auc(cal.get("brier")), _num(cal.get("brier_base_rate"), 3), q["status"],
        ])
    return head, rows


def _auc(e: Mapping[str, float] | None) -> str:
    return "-" if not e else f"{e['estimate']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]"


def markdown(table: Table) -> str:
    """A GitHub Markdown table."""
    head, rows = table
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def rich_table(table: Table, title: str | None = None) -> Any:
    """A ``rich.table.Table`` of the same rows."""
    from rich.table import Table as RichTable

    head, rows = table
    out = RichTable(title=title)
    for i, h in enumerate(head):
        out.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        out.add_row(*row)
    return out
