"""How well the value reading predicts final success: AUROC with a bootstrap CI, and its calibration.

The reading (see :data:`valueagent.eval.records.READING_DEFINITION`) is a score, not a probability. To
judge calibration honestly it is mapped to a probability by a one-feature logistic model fitted
*out of fold* (k folds; each task's probability comes from a model that never saw it), then scored with
the Brier score against the base-rate forecast (always predicting the fold's training pass rate) and
binned for a reliability diagram. The Brier interval is a percentile bootstrap over tasks of the
out-of-fold forecasts (the folds are not refitted per bootstrap sample).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from valueagent.eval.records import TaskRecord
from valueagent.stats import auroc_bootstrap, brier, logistic_regression, reliability_bins

__all__ = ["MIN_ITEMS", "calibration", "fit_logistic", "oof_probabilities", "reading_quality"]

MIN_ITEMS = 8
"""Below this many tasks with a reading (or without both outcomes) no AUROC or calibration is reported."""


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-3) -> tuple[float, float]:
    """``(intercept, slope)`` of ``P(y) = sigmoid(a + b * x)``: Platt scaling of one reading, its penalty
    ``l2 * n`` on the standardized slope (keeps separable data finite), returned on the raw ``x`` scale."""
    w, b = logistic_regression(np.asarray(x, float)[:, None], y, l2=l2 * len(x), standardize=True)
    return b, float(w[0])


def oof_probabilities(
    scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray, *, folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold logistic probabilities and the matching out-of-fold base-rate forecasts."""
    x, y = np.asarray(scores, float), np.asarray(labels, float)
    n = len(x)
    k = max(2, min(folds, n))
    fold = np.empty(n, int)
    fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % k
    probs, base = np.empty(n), np.empty(n)
    for f in range(k):
        test, train = fold == f, fold != f
        rate = float(y[train].mean())
        base[test] = rate
        if rate in (0.0, 1.0) or float(x[train].std()) == 0.0:
            probs[test] = rate  # nothing to fit: fall back to the base rate
            continue
        a, b = fit_logistic(x[train], y[train])
        probs[test] = 1 / (1 + np.exp(-(a + b * x[test])))
    return probs, base


def calibration(
    scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray, *, folds: int = 5, n_bins: int = 5,
    n_boot: int = 2000, seed: int = 0,
) -> dict[str, Any]:
    """Brier score (with CI) of out-of-fold probabilities, the base-rate Brier, and reliability bins."""
    y = np.asarray(labels, bool)
    probs, base = oof_probabilities(scores, labels, folds=folds, seed=seed)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    boot = ((probs[idx] - y[idx]) ** 2).mean(axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    a, b = fit_logistic(np.asarray(scores, float), y.astype(float))
    return {
        "method": f"out-of-fold logistic (Platt) of the reading, {min(folds, len(y))} folds",
        "brier": {"estimate": brier(probs, y), "lo": float(lo), "hi": float(hi), "conf": 0.95},
        "brier_base_rate": brier(base, y),
        "skill": 1 - brier(probs, y) / brier(base, y) if brier(base, y) > 0 else None,
        "bins": [asdict(bn) for bn in reliability_bins(probs, y, n_bins)],
        "full_fit": {"intercept": a, "slope": b},
    }


def _auroc(scores: list[float], labels: list[bool], n_boot: int, seed: int) -> dict[str, float]:
    est = auroc_bootstrap(scores, labels, n_boot=n_boot, seed=seed)
    return {"estimate": est.estimate, "lo": est.lo, "hi": est.hi, "conf": est.conf}


def reading_quality(records: Sequence[TaskRecord], *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """AUROC of the value reading (and of log-probability) for ``passed``, and the value's calibration.

    Uses the records that have a value reading; the log-probability AUROC is computed on the same tasks
    so the two are comparable. ``status`` says why figures are missing when they are.
    """
    have = [r for r in records if r.value is not None]
    labels = [r.passed for r in have]
    out: dict[str, Any] = {"n": len(have), "n_passed": sum(labels), "n_without_reading": len(records) - len(have)}
    if len(have) < MIN_ITEMS:
        return {**out, "status": f"too few tasks with a value reading ({len(have)} < {MIN_ITEMS})"}
    if all(labels) or not any(labels):
        return {**out, "status": "every task has the same outcome; AUROC and calibration are undefined"}
    values = [float(r.value) for r in have if r.value is not None]
    out["status"] = "ok"
    out["value_auroc"] = _auroc(values, labels, n_boot, seed)
    lps = [r.logprob for r in have]
    if all(lp is not None for lp in lps):
        out["logprob_auroc"] = _auroc([float(lp) for lp in lps if lp is not None], labels, n_boot, seed)
    out["calibration"] = calibration(values, labels, n_boot=n_boot, seed=seed)
    return out
