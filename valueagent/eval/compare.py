"""``valueagent compare RUN_A RUN_B``: paired statistics between two runs on their common tasks and policies.

Differences are ``B - A`` (the second run minus the first). Each policy present in both runs is compared
on the tasks both runs finished for it: McNemar exact p (Holm-adjusted over the policies), a bootstrap
interval of the pass-rate difference, and the same for test runs and tokens. Configuration differences
(model, axis, dataset, seed, commit) are listed so a comparison of unlike runs is never silent.

When A and B are two models (or two axes) on the same tasks, a policy's own change mixes the model's
strength with its reading. ``edges`` isolates the reading: for each policy and its control at matched cost
(:func:`control_pairs`) present in both runs, the policy's edge over the control in each run and the
per-task difference of those edges, B minus A (bootstrap interval, exact sign-flip p, Holm over the pairs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from valueagent.eval.config import read_config
from valueagent.eval.records import TaskRecord, load_results, policy_order
from valueagent.eval.summary import control_pairs, holm, paired_comparison
from valueagent.eval.tables import edge_table, markdown, paired_table
from valueagent.stats import difference_of_differences, mcnemar_exact, wilson

__all__ = ["COMPARE_SCHEMA", "control_pairs", "NoOverlapError", "compare_runs", "config_differences", "control_edges",
           "render_markdown"]

COMPARE_SCHEMA = "valueagent-compare/1"
_CONFIG_KEYS = (("model", "model_id"), ("model", "revision"), ("model", "dtype"), ("model", "quantization"),
                ("model", "backend"),
                ("axis", "sha256"), ("gate_config", "path"), ("gate_config", "created"),
                ("dataset", "hash"), ("seeds", "seed"), ("git", "commit"))


class NoOverlapError(ValueError):
    """The two runs share no (policy, task) pair, so there is nothing to pair."""


def config_differences(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """``{"section.key": [a, b]}`` for the identifying config fields that differ (empty if none/unknown)."""
    if not a or not b:
        return {}
    out = {}
    for section, key in _CONFIG_KEYS:
        va, vb = (a.get(section) or {}).get(key), (b.get(section) or {}).get(key)
        if va != vb:
            out[f"{section}.{key}"] = [va, vb]
    return out


def compare_runs(run_a: str | Path, run_b: str | Path, *, n_boot: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """The paired comparison of two run directories (see the module doc).

    Raises :class:`NoOverlapError` when no policy has tasks in both runs.
    """
    ra, rb = load_results(run_a), load_results(run_b)
    common_policies = policy_order([p for p in ra.by_policy if p in rb.by_policy])
    rows: list[dict[str, Any]] = []
    for policy in common_policies:
        a, b = ra.by_policy[policy], rb.by_policy[policy]
        pc = paired_comparison(b, a, n_boot=n_boot, seed=seed)
        if pc is None:
            continue
        # paired_comparison(b, a) gives B - A; rename its first/second-argument counts to the run labels
        rows.append({
            **pc, "policy": policy, "a": f"{policy} (B)", "b": f"{policy} (A)",
            "passed_a": pc["passed_b"], "passed_b": pc["passed_a"], "a_only": pc["b_only"], "b_only": pc["a_only"],
            "pass@1_a": _wilson(pc["passed_b"], pc["n_common"]), "pass@1_b": _wilson(pc["passed_a"], pc["n_common"]),
        })
    if not rows:
        raise NoOverlapError(
            f"{run_a} and {run_b} have no policy with tasks in common "
            f"(A: {ra.policies}, B: {rb.policies}); compare runs of the same policies and tasks"
        )
    for row, p in zip(rows, holm([r["mcnemar_p"] for r in rows]), strict=True):
        row["mcnemar_p_holm"] = p
    return {
        "schema": COMPARE_SCHEMA,
        "run_a": str(run_a),
        "run_b": str(run_b),
        "direction": "differences are B - A",
        "config_differences": config_differences(read_config(run_a), read_config(run_b)),
        "only_in_a": [p for p in ra.policies if p not in rb.by_policy],
        "only_in_b": [p for p in rb.policies if p not in ra.by_policy],
        "policies": rows,
        "edges": control_edges(ra.by_policy, rb.by_policy, n_boot=n_boot, seed=seed),
        "settings": {"n_boot": n_boot, "seed": seed, "conf": 0.95},
    }


def control_edges(a: Mapping[str, Mapping[str, TaskRecord]], b: Mapping[str, Mapping[str, TaskRecord]], *,
                  n_boot: int = 10_000, seed: int = 0) -> list[dict[str, Any]]:
    """For each pair of :func:`control_pairs` whose two policies both runs hold: on the tasks all four
    finished, the policy's edge over its control in A and in B (pass-rate points, wins/losses, McNemar p,
    mean tokens and test runs of each) and the per-task difference of the edges, B minus A."""
    rows: list[dict[str, Any]] = []
    for policy, control in control_pairs():
        if not all(name in run for run in (a, b) for name in (policy, control)):
            continue
        ids = sorted(set(a[policy]) & set(a[control]) & set(b[policy]) & set(b[control]))
        if not ids:
            continue
        outcomes = {(side, name): [run[name][t].passed for t in ids]
                    for side, run in (("a", a), ("b", b)) for name in (policy, control)}
        row: dict[str, Any] = {"policy": policy, "control": control, "n_common": len(ids)}
        for side, run in (("a", a), ("b", b)):
            mc = mcnemar_exact(outcomes[side, policy], outcomes[side, control])
            row[f"edge_{side}"] = {
                "delta": (sum(outcomes[side, policy]) - sum(outcomes[side, control])) / len(ids),
                "wins": mc.b10, "losses": mc.b01, "p": mc.p_value,
                "tokens": [sum(run[name][t].tokens for t in ids) / len(ids) for name in (policy, control)],
                "test_runs": [sum(run[name][t].test_runs for t in ids) / len(ids) for name in (policy, control)],
            }
        row["difference_of_differences"] = difference_of_differences(
            outcomes["a", policy], outcomes["a", control], outcomes["b", policy], outcomes["b", control],
            n_boot=n_boot, seed=seed)
        rows.append(row)
    for row, p in zip(rows, holm([r["difference_of_differences"]["p"] for r in rows]), strict=True):
        row["difference_of_differences"]["p_holm"] = p
    return rows


def _wilson(k: int, n: int) -> dict[str, float]:
    e = wilson(k, n)
    return {"estimate": e.estimate, "lo": e.lo, "hi": e.hi, "conf": e.conf}


def render_markdown(result: Mapping[str, Any], *, a_label: str = "A", b_label: str = "B") -> str:
    """The comparison as Markdown: each policy B - A, the edges over the controls, what differs."""
    lines = [f"# {b_label} against {a_label}: paired over the same tasks", "",
             f"- **{a_label}** (A): `{result['run_a']}`", f"- **{b_label}** (B): `{result['run_b']}`", "",
             f"Each policy's own change; differences are {b_label} - {a_label} (McNemar exact p, Holm over the "
             "policies; bootstrap 95% intervals):", "",
             markdown(paired_table([{**r, "a": f"{r['policy']} ({b_label})", "b": f"{r['policy']} ({a_label})"}
                                    for r in result["policies"]], a_label=a_label, b_label=b_label))]
    if result["edges"]:
        lines += ["", f"Each value policy's edge over its control at matched cost, on {a_label} and on {b_label}, "
                  "and the per-task difference of the edges (what lifts policy and control alike cancels; "
                  "bootstrap 95% interval, exact sign-flip p, Holm over the pairs):", "",
                  markdown(edge_table(result["edges"], a_label=a_label, b_label=b_label))]
    notes = [f"- config differs: {key}: {va} ({a_label}) vs {vb} ({b_label})"
             for key, (va, vb) in result["config_differences"].items()]
    notes += [f"- only in {lab}: {', '.join(result[f'only_in_{side}'])}"
              for side, lab in (("a", a_label), ("b", b_label)) if result[f"only_in_{side}"]]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"
