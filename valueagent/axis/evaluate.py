"""The three distinctions and the held-out episodes, read with one direction at one layer.

Each result holds the value reading's figures, a random-direction control (``random`` in the key),
the model's mean token log-probability over the same tokens, and sample counts. Readings are mean
cosines over a span (see :mod:`valueagent.axis.validate`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from valueagent.axis.activations import TextActs
from valueagent.axis.validate import (
    crossval_combined,
    matched_auroc,
    mean_cosines,
    paired,
    position_bins,
    random_paired,
    safe_auroc,
    token_controls,
)

Record = dict[str, Any]


def span_table(acts: Sequence[TextActs], span: str, li: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean_unit (N, H), mean logprob (N,), n_tokens (N,)) of ``span`` at layer index ``li``; a text
    without the span gets NaNs (the caller drops its pair)."""
    h = next(a.spans[span].mean_unit.shape[1] for a in acts if span in a.spans)
    mu = np.full((len(acts), h), np.nan, dtype=np.float32)
    lp = np.full(len(acts), np.nan)
    nt = np.zeros(len(acts), dtype=int)
    for i, a in enumerate(acts):
        s = a.spans.get(span)
        if s is not None:
            mu[i], lp[i], nt[i] = s.mean_unit[li], s.mean_logprob, s.n_tokens
    return mu, lp, nt


def paired_reading(pos: Sequence[TextActs], neg: Sequence[TextActs], span: str, li: int,
                   direction: np.ndarray, *, strata: Sequence[str] | None = None) -> dict[str, Any]:
    """Positive vs negative texts, pair by pair: value, random control, log-prob and both combined."""
    mp, lp_p, np_ = span_table(pos, span, li)
    mn, lp_n, nn_ = span_table(neg, span, li)
    ok = np.isfinite(lp_p) & np.isfinite(lp_n)
    mp, mn, lp_p, lp_n = mp[ok], mn[ok], lp_p[ok], lp_n[ok]
    vp, vn = mean_cosines(mp, direction), mean_cosines(mn, direction)
    out: dict[str, Any] = {"n_pairs": int(ok.sum()), "n_tokens_mean": float(np.r_[np_[ok], nn_[ok]].mean())}
    v = paired(vp, vn)
    out.update({"value_win_rate": v["win_rate"], "value_auroc": v["auroc"]})
    out.update(random_paired(mp, mn))
    lpr = paired(lp_p, lp_n)
    out.update({"logprob_win_rate": lpr["win_rate"], "logprob_auroc": lpr["auroc"]})
    if ok.sum() >= 10:
        groups = np.r_[np.arange(ok.sum()), np.arange(ok.sum())]
        labels = np.r_[np.ones(ok.sum(), bool), np.zeros(ok.sum(), bool)]
        combo = crossval_combined(np.c_[np.r_[vp, vn], np.r_[lp_p, lp_n]], labels, groups)
        c = paired(combo[: ok.sum()], combo[ok.sum():])
        out.update({"combined_win_rate": c["win_rate"], "combined_auroc": c["auroc"]})
    if strata is not None:
        st = np.asarray(strata)[ok]
        out["by_kind"] = {}
        for k in sorted(set(st)):
            m = st == k
            vk, rk, lk = paired(vp[m], vn[m]), random_paired(mp[m], mn[m]), paired(lp_p[m], lp_n[m])
            out["by_kind"][k] = {"n_pairs": int(m.sum()), "value_win_rate": vk["win_rate"],
                                 "value_auroc": vk["auroc"], "random_win_rate_mean": rk["random_win_rate_mean"],
                                 "logprob_win_rate": lk["win_rate"], "logprob_auroc": lk["auroc"]}
    return out


def backtracking_reading(clean: Sequence[TextActs], back: Sequence[TextActs], li: int,
                         direction: np.ndarray) -> dict[str, Any]:
    """Clean vs backtracking traces in the window before the backtrack (step k), and the drop from
    the trace's own earlier steps to that window (within-trajectory, so position drift cancels)."""
    out = paired_reading(clean, back, "step", li, direction)
    drops = {}
    for name, acts in (("clean", clean), ("backtrack", back)):
        pre, _, _ = span_table(acts, "prefix", li)
        step, _, _ = span_table(acts, "step", li)
        ok = np.isfinite(pre).all(1) & np.isfinite(step).all(1)
        drops[name] = mean_cosines(step[ok], direction) - mean_cosines(pre[ok], direction)
    n = min(len(drops["clean"]), len(drops["backtrack"]))
    out["mean_drop_backtrack"] = float(-drops["backtrack"].mean()) if n else None
    out["mean_drop_clean"] = float(-drops["clean"].mean()) if n else None
    out["drop_difference"] = float(drops["clean"][:n].mean() - drops["backtrack"][:n].mean()) if n else None
    return out


def heldout_tokens(table: Any, direction: np.ndarray, li: int, *, n_random: int = 16) -> dict[str, Any]:
    """Token AUROC (after vs before) on held-out criteria with its controls, at one layer."""
    from valueagent.axis.validate import _cos

    c = _cos(table, li, direction[None, :])[:, 0]
    ctrl = token_controls(table, n_random=n_random)
    layer_ctrl = ctrl["per_layer"][li]  # type: ignore[index]
    return {
        "value_auroc": safe_auroc(c, table.label),
        "value_matched_auroc": matched_auroc(c, table.label, position_bins(table.rel_pos)),
        "random_auroc_oriented_mean": layer_ctrl["random_auroc_oriented_mean"],
        "random_matched_auroc_oriented_mean": layer_ctrl["random_matched_auroc_oriented_mean"],
        "position_rel_auroc": ctrl["position_rel_auroc"],
        "position_abs_auroc": ctrl["position_abs_auroc"],
        "logprob_auroc_oriented": ctrl["logprob_auroc_oriented"],
        "n_tokens": ctrl["n_tokens"],
        "n_after": ctrl["n_after"],
        "n_episodes": ctrl["n_episodes"],
    }


def distinctions_for(acts: Mapping[str, Sequence[TextActs]], sel: dict[str, Any], tokens: Any,
                     direction: np.ndarray, layer: int, *, n_random: int = 16) -> dict[str, Any]:
    """All distinctions for one direction at ``layer``: the ``distinctions`` map of ``axis eval``."""
    li = list(next(iter(acts["code_test_ok"])).layers).index(layer)
    kinds = [p["kind"] for p in sel["code_test"]]
    ok, bad = acts["code_test_ok"], acts["code_test_bad"]
    code = paired_reading(ok, bad, "code", li, direction, strata=kinds)
    code["body_only"] = {k: v for k, v in paired_reading(ok, bad, "body", li, direction).items() if k != "by_kind"}
    code["note"] = ("correct (1) vs mutant (0) on tasks no estimator was fitted on, pairs not used to choose; "
                    "rename mutants still pass their tests")
    conf = paired_reading(acts["conf_hi"], acts["conf_lo"], "claim", li, direction)
    conf["whole_completion"] = paired_reading(acts["conf_hi"], acts["conf_lo"], "completion", li, direction)
    conf["note"] = "high (1) vs low (0) stated confidence, read over the identical claim"
    bt = backtracking_reading(acts["bt_clean"], acts["bt_back"], li, direction)
    bt["note"] = ("clean (1) vs backtracking (0) traces in the step right before the backtrack; mean_drop_* = "
                  "mean(prefix) - mean(step) within each trace")
    tli = list(tokens.layers).index(layer)
    held = heldout_tokens(tokens, direction, tli, n_random=n_random)
    held["contrasts"] = paired_reading(acts["ctr_held_s"], acts["ctr_held_f"], "final", li, direction)
    return {"confidence": conf, "backtracking": bt, "code_correctness": code, "heldout_episodes": held}


def summary_figures(rep: dict[str, Any] | None, chosen: dict[str, Any], dist: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers, flat."""
    code, held = dist["code_correctness"], dist["heldout_episodes"]
    out: dict[str, Any] = {
        "estimator": chosen["estimator"], "layer": chosen["layer"],
        "heldout_token_auroc": held["value_auroc"], "position_rel_auroc": held["position_rel_auroc"],
        "heldout_matched_auroc": held["value_matched_auroc"],
        "random_matched_auroc_oriented": held["random_matched_auroc_oriented_mean"],
        "heldout_contrast_auroc": held["contrasts"]["value_auroc"],
        "contrast_random_auroc_oriented": held["contrasts"]["random_auroc_oriented_mean"],
        "code_value_win_rate": code["value_win_rate"], "code_logprob_win_rate": code["logprob_win_rate"],
        "code_combined_win_rate": code.get("combined_win_rate"),
        "code_random_win_rate_oriented": code["random_win_rate_oriented_mean"],
        "confidence_value_auroc": dist["confidence"]["value_auroc"],
        "backtracking_value_auroc": dist["backtracking"]["value_auroc"],
    }
    if rep is not None:
        row = rep["per_layer"][chosen["estimator"]][rep["layers"].index(chosen["layer"])]
        keys = ("rollout_value_auroc", "rollout_logprob_auroc", "rollout_combined_auroc", "code_dev_win_rate",
                "matched_auroc", "contrast_auroc", "selection_score")
        out.update({f"selection_{k}" if not k.startswith(("rollout", "selection")) else k: row.get(k) for k in keys})
    return out

