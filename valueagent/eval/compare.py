"""``valueagent compare RUN_A RUN_B``: paired statistics between two runs on their common tasks and policies.

Differences are ``B - A`` (the second run minus the first). Each policy present in both runs is compared
on the tasks both runs finished for it: McNemar exact p (Holm-adjusted over the policies), a bootstrap
interval of the pass-rate difference, and the same for test runs and tokens. Configuration differences
(model, axis, dataset, seed, commit) are listed so a comparison of unlike runs is never silent.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from valueagent.eval.config import read_config
from valueagent.eval.records import load_results, policy_order
from valueagent.eval.summary import holm, paired_comparison
from valueagent.stats import wilson

__all__ = ["COMPARE_SCHEMA", "NoOverlapError", "compare_runs", "config_differences"]

COMPARE_SCHEMA = "valueagent-compare/1"
_CONFIG_KEYS = (("model", "model_id"), ("model", "revision"), ("model", "dtype"), ("model", "quantization"),
                ("axis", "sha256"),
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
        "settings": {"n_boot": n_boot, "seed": seed, "conf": 0.95},
    }


def _wilson(k: int, n: int) -> dict[str, float]:
    e = wilson(k, n)
    return {"estimate": e.estimate, "lo": e.lo, "hi": e.hi, "conf": e.conf}
