"""Estimators of a value direction from span activations (numpy only, every layer at once).

- :func:`diff_of_means` — the paper's recipe: per group (criterion), mean "after" state minus mean
  "before" state, averaged over groups; unnormalized.
- :func:`matched_contrast` — the same assistant tokens read once in a context where success is
  expected and once where failure is; the mean difference over identical tokens cancels position
  and content, leaving what the context says about the outcome.
- :func:`fit_probe` — a supervised value probe: L2 logistic regression predicting "this attempt
  passes its tests" from the mean *unit* hidden state of the attempt, cross-fitted by group (task).
  Its weight vector ``w`` is a direction whose mean per-token cosine with a text is exactly
  ``(w . mean_unit) / |w|``, i.e. an affine function of the probe's logit: the backend's per-token
  cosine reading and the probe rank texts identically.

Array shapes: ``(N, L, H)`` = items x layers x hidden; directions are ``(L, H)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from valueagent.stats import auroc, logistic_regression


def _weighted_group_mean(x: np.ndarray, w: np.ndarray, groups: np.ndarray, g: object) -> np.ndarray:
    m = groups == g
    ww = w[m].astype(np.float64)
    return np.tensordot(ww / ww.sum(), x[m].astype(np.float64), axes=1)  # (L, H)


def diff_of_means(
    after: np.ndarray,
    before: np.ndarray,
    groups: Sequence[object],
    *,
    n_after: np.ndarray | None = None,
    n_before: np.ndarray | None = None,
) -> np.ndarray:
    """``mean_g( mean_after - mean_before )`` per layer. ``after``/``before``: (N, L, H) span means of
    N episodes; ``n_after``/``n_before``: their token counts (token-weighted pooling within a group,
    as the paper pools tokens); ``groups``: the episode's criterion. Returns (L, H) float32."""
    g = np.asarray(groups)
    na = np.ones(len(g)) if n_after is None else np.asarray(n_after, dtype=np.float64)
    nb = np.ones(len(g)) if n_before is None else np.asarray(n_before, dtype=np.float64)
    diffs = [
        _weighted_group_mean(after, na, g, c) - _weighted_group_mean(before, nb, g, c) for c in np.unique(g)
    ]
    out: np.ndarray = np.mean(diffs, axis=0).astype(np.float32)
    return out


def matched_contrast(success: np.ndarray, failure: np.ndarray, groups: Sequence[object] | None = None) -> np.ndarray:
    """Mean over pairs of (success-context span mean - failure-context span mean) over identical
    tokens; averaged within then across ``groups`` when given. (N, L, H) each -> (L, H) float32."""
    d = success.astype(np.float64) - failure.astype(np.float64)
    if groups is None:
        out: np.ndarray = d.mean(0).astype(np.float32)
        return out
    g = np.asarray(groups)
    out = np.mean([d[g == c].mean(0) for c in np.unique(g)], axis=0).astype(np.float32)
    return out


# -- supervised probe -------------------------------------------------------------------------------


def logistic_fit(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """L2 logistic regression on ``x`` (n, d) with penalty ``lam`` in raw units (:func:`stats.logistic_regression`,
    solved in the rows' span). Returns weights (d,), intercept."""
    return logistic_regression(x, y, l2=lam)


def _group_folds(groups: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(uniq)
    return [np.isin(groups, part) for part in np.array_split(uniq, min(k, len(uniq)))]


def crossfit_scores(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, lam: float, *, k: int = 5, seed: int = 0
) -> np.ndarray:
    """Out-of-fold scores: each item's projection on the unit direction of a probe fitted without its
    group. (Logits with fold-specific intercepts would mix fold base rates into a pooled AUROC.)"""
    out = np.zeros(len(y))
    for test in _group_folds(groups, k, seed):
        train = ~test
        if len(np.unique(y[train])) < 2:
            out[test] = 0.0
            continue
        w, _ = logistic_fit(x[train], y[train], lam)
        out[test] = x[test] @ (w / max(float(np.linalg.norm(w)), 1e-30))
    return out


@dataclass(frozen=True)
class ProbeFit:
    """A value probe per layer: directions (L, H), intercepts, the chosen L2 strength per layer and
    cross-fitted out-of-fold AUROC (grouped by task, so no task is scored by a probe fitted on it)."""

    directions: np.ndarray  # (L, H)
    intercepts: np.ndarray  # (L,)
    lam: np.ndarray  # (L,)
    oof_auroc: np.ndarray  # (L,)
    oof_scores: np.ndarray  # (L, N) out-of-fold projections


def fit_probe(
    x: np.ndarray,
    y: np.ndarray,
    groups: Sequence[object],
    *,
    lams: Sequence[float] = (0.1, 1.0, 10.0),
    k: int = 5,
    seed: int = 0,
) -> ProbeFit:
    """Fit a probe at every layer. ``x``: (N, L, H) per-attempt features (mean unit hidden states);
    ``y``: (N,) 1 = passed. The L2 strength is picked per layer by grouped CV AUROC on the whole set
    (the reported out-of-fold AUROC is therefore slightly optimistic: 3 candidates only)."""
    y = np.asarray(y, dtype=np.float64)
    g = np.asarray(groups)
    if len(np.unique(y)) < 2:
        raise ValueError("the probe needs both passing and failing attempts; sample more (higher temperature)")
    n, n_layers, hidden = x.shape
    # Scale features to unit RMS per layer: makes one lambda grid fit every layer.
    dirs = np.zeros((n_layers, hidden), dtype=np.float32)
    icpt, lam_sel, aucs = np.zeros(n_layers), np.zeros(n_layers), np.zeros(n_layers)
    oof = np.zeros((n_layers, n))
    for layer in range(n_layers):
        xl = x[:, layer, :].astype(np.float64)
        scale = float(np.sqrt(((xl - xl.mean(0)) ** 2).sum(1).mean())) or 1.0
        xs = xl / scale
        best = (-1.0, lams[0], np.zeros(n))
        for lam in lams:
            s = crossfit_scores(xs, y, g, lam, k=k, seed=seed)
            a = auroc(s, y.astype(bool))
            if a > best[0]:
                best = (a, lam, s)
        aucs[layer], lam_sel[layer], oof[layer] = best
        w, b = logistic_fit(xs, y, best[1])
        dirs[layer] = (w / scale).astype(np.float32)
        icpt[layer] = b
    return ProbeFit(directions=dirs, intercepts=icpt, lam=lam_sel, oof_auroc=aucs, oof_scores=oof)


def random_directions(hidden: int, n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` seeded Gaussian directions (n, hidden): the control every reading is compared against."""
    return np.random.default_rng(seed).standard_normal((n, hidden)).astype(np.float32)


def unit(v: np.ndarray) -> np.ndarray:
    """Normalize along the last axis."""
    out: np.ndarray = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    return out
