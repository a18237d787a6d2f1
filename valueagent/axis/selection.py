"""Per-layer validation of every estimator on held-out data, and the choice of the default reading.

Selection data (never used to fit a direction): tokens of held-out-criteria episodes, held-out
matched contrasts, and the coding rollouts (out-of-fold for the probe, whose folds are grouped by
task). Distinctions are not used here: they are the independent test of the chosen reading.

The selection score of (estimator, layer) is the mean of four margins over random directions:
matched-position token AUROC (held-out criteria), held-out contrast AUROC (success vs failure context
over identical tokens), rollout pass AUROC (own attempts; out-of-fold for the probe) and the paired
win rate of correct over corrupted code on "dev" pairs of held-out tasks — each minus the mean
*oriented* figure of random directions on the same data. Position cannot help the first (positions
are matched) nor the second (identical tokens); the last two are where a gate is used. The test
pairs (the held-out tasks' other code pairs), confidence and backtracking never enter the choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from valueagent.axis.activations import TextActs
from valueagent.axis.evaluate import span_table
from valueagent.axis.validate import (
    TokenTable,
    mean_cosines,
    random_auroc,
    random_paired,
    safe_auroc,
    token_controls,
    token_scores,
    value_logprob_combined,
)


def token_table(acts: Sequence[TextActs]) -> TokenTable:
    """Tokens of held-out episodes (spans ``before``/``after`` with tokens, ``paragraph``)."""
    units, labels, rel, absp, lps, eps = [], [], [], [], [], []
    layers: tuple[int, ...] = ()
    for e, a in enumerate(acts):
        para = a.spans.get("paragraph")
        if para is None or "before" not in a.spans or "after" not in a.spans:
            continue
        layers = a.layers
        width = max(para.last_token - para.first_token, 1)
        for name, lab in (("before", False), ("after", True)):
            s = a.spans[name]
            assert s.tokens is not None and s.token_index is not None and s.logprobs is not None
            t = s.tokens.astype(np.float32)
            units.append((t / np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-6)).astype(np.float16))
            labels.append(np.full(len(t), lab))
            rel.append((s.token_index - para.first_token) / width)
            absp.append(s.token_index.astype(float))
            lps.append(s.logprobs)
            eps.append(np.full(len(t), e))
    if not units:
        raise ValueError("no held-out episode has both position labels: read more episodes")
    return TokenTable(unit=np.concatenate(units), label=np.concatenate(labels), rel_pos=np.concatenate(rel),
                      abs_pos=np.concatenate(absp), logprob=np.concatenate(lps), episode=np.concatenate(eps),
                      layers=layers)


@dataclass(frozen=True)
class Rollouts:
    """Per-attempt features of the coding rollouts."""

    mean_unit: np.ndarray  # (N, L, H)
    logprob: np.ndarray  # (N,)
    passed: np.ndarray  # (N,) bool
    task: np.ndarray  # (N,) str


def rollout_features(acts: Sequence[TextActs], passed: Sequence[bool], tasks: Sequence[str]) -> Rollouts:
    keep = [i for i, a in enumerate(acts) if "completion" in a.spans]
    return Rollouts(
        mean_unit=np.stack([acts[i].spans["completion"].mean_unit for i in keep]),
        logprob=np.array([acts[i].spans["completion"].mean_logprob for i in keep]),
        passed=np.array([bool(passed[i]) for i in keep]),
        task=np.array([tasks[i] for i in keep]),
    )


def layer_report(
    directions: dict[str, np.ndarray],
    tokens: TokenTable,
    contrasts: tuple[Sequence[TextActs], Sequence[TextActs]],
    rollouts: Rollouts | None,
    *,
    oof: dict[str, np.ndarray] | None = None,
    code: tuple[Sequence[TextActs], Sequence[TextActs]] | None = None,
    n_random: int = 16,
) -> dict[str, Any]:
    """Every estimator at every layer on the selection data, with controls per layer.

    ``oof``: for a supervised estimator, out-of-fold rollout scores per layer (L, N) to use instead of
    its in-sample direction's readings."""
    layers = tokens.layers
    tctrl = token_controls(tokens, n_random=n_random)
    succ, fail = contrasts
    ctrl_layers: list[dict[str, Any]] = []
    code_lp_win: float | None = None
    for li in range(len(layers)):
        row: dict[str, Any] = dict(tctrl["per_layer"][li])  # type: ignore[index]
        ms, _, _ = span_table(succ, "final", li)
        mf, _, _ = span_table(fail, "final", li)
        rp = random_paired(ms, mf, n_random=n_random)
        row["contrast_random_auroc_oriented_mean"] = rp["random_auroc_oriented_mean"]
        row["contrast_random_win_rate_oriented_mean"] = rp["random_win_rate_oriented_mean"]
        if code is not None and code[0]:
            mo, _, _ = span_table(code[0], "code", li)
            mb, _, _ = span_table(code[1], "code", li)
            row["code_dev_random_win_rate_oriented_mean"] = random_paired(mo, mb, n_random=n_random)[
                "random_win_rate_oriented_mean"]
            if li == 0:
                _, lo, _ = span_table(code[0], "code", li)
                _, lb, _ = span_table(code[1], "code", li)
                code_lp_win = float(np.mean((lo > lb) + 0.5 * (lo == lb)))
        if rollouts is not None:
            row["rollout_random_auroc_oriented_mean"] = random_auroc(
                rollouts.mean_unit[:, li], rollouts.passed, n_random=n_random)["random_auroc_oriented_mean"]
        ctrl_layers.append(row)
    per: dict[str, list[dict[str, Any]]] = {}
    for name, dirs in directions.items():
        rows = token_scores(tokens, dirs)
        for li, layer in enumerate(layers):
            d, r, c = dirs[layer], rows[li], ctrl_layers[li]
            ms, _, _ = span_table(succ, "final", li)
            mf, _, _ = span_table(fail, "final", li)
            vs, vf = mean_cosines(ms, d), mean_cosines(mf, d)
            r["contrast_win_rate"] = float(np.mean((vs > vf) + 0.5 * (vs == vf)))
            r["contrast_auroc"] = safe_auroc(np.r_[vs, vf], np.r_[np.ones(len(vs), bool), np.zeros(len(vf), bool)])
            margins = [
                (r["matched_auroc"] or 0.5) - c["random_matched_auroc_oriented_mean"],
                (r["contrast_auroc"] or 0.5) - c["contrast_random_auroc_oriented_mean"],
            ]
            if code is not None and code[0]:
                mo, _, _ = span_table(code[0], "code", li)
                mb, _, _ = span_table(code[1], "code", li)
                vo, vb = mean_cosines(mo, d), mean_cosines(mb, d)
                r["code_dev_win_rate"] = float(np.mean((vo > vb) + 0.5 * (vo == vb)))
                margins.append(r["code_dev_win_rate"] - c["code_dev_random_win_rate_oriented_mean"])
            if rollouts is not None:
                v = oof[name][li] if oof is not None and name in oof else mean_cosines(rollouts.mean_unit[:, li], d)
                combo = value_logprob_combined(v, rollouts.logprob, rollouts.passed, rollouts.task)
                r.update({f"rollout_{k}": x for k, x in combo.items()})
                margins.append((r["rollout_value_auroc"] or 0.5) - c["rollout_random_auroc_oriented_mean"])
            r["margins"] = margins
            r["selection_score"] = float(np.mean(margins))
        per[name] = rows
    return {"layers": list(layers), "per_layer": per,
            "controls": {"tokens": {**tctrl, "per_layer": ctrl_layers}, "code_dev_logprob_win_rate": code_lp_win}}


def choose(report: dict[str, Any], *, exclude_layers: Sequence[int] = ()) -> dict[str, Any]:
    """The (estimator, layer) with the largest selection score; ties go to the earlier layer."""
    best: tuple[float, str, int] | None = None
    for name, rows in report["per_layer"].items():
        for layer, r in zip(report["layers"], rows, strict=True):
            if layer in exclude_layers:
                continue
            s = r["selection_score"]
            if best is None or s > best[0] + 1e-12:
                best = (s, name, layer)
    if best is None:
        raise ValueError("no candidate layer to choose from")
    return {"estimator": best[1], "layer": best[2], "selection_score": best[0]}
