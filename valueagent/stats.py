"""Small exact statistics for eval summaries: intervals, paired tests, ranking and calibration metrics, and
the project's one logistic regression (every fitted probe, gate and Platt scaling uses it).

Only the standard library and numpy. Results are frozen dataclasses of plain Python numbers, so they drop
straight into JSON; :class:`Estimate` also unpacks as ``(estimate, lo, hi)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

Floats = Sequence[float] | np.ndarray
Bools = Sequence[bool] | np.ndarray

__all__ = [
    "ConformalThreshold",
    "Estimate",
    "McNemarResult",
    "PairedOutcomes",
    "ReliabilityBin",
    "auroc",
    "auroc_bootstrap",
    "brier",
    "conformal_threshold",
    "difference_of_differences",
    "expected_calibration_error",
    "holm",
    "logistic_regression",
    "mcnemar_exact",
    "paired_outcomes",
    "paired_bootstrap_diff",
    "paired_sign_flip",
    "pass_at_k",
    "reliability_bins",
    "wilson",
]


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with a ``conf`` interval; unpacks as ``estimate, lo, hi = ...``."""

    estimate: float
    lo: float
    hi: float
    conf: float = 0.95

    def __iter__(self) -> Iterator[float]:
        return iter((self.estimate, self.lo, self.hi))


@dataclass(frozen=True, slots=True)
class McNemarResult:
    """Paired binary outcomes: ``b01`` = a failed and b passed, ``b10`` = a passed and b failed."""

    b01: int
    b10: int
    n: int
    p_value: float


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """One probability bin ``[lo, hi)`` (the last is closed); means are None for an empty bin."""

    lo: float
    hi: float
    count: int
    mean_prob: float | None
    frac_positive: float | None


@dataclass(frozen=True, slots=True)
class ConformalThreshold:
    """A calibrated acceptance threshold: accept (skip tests) when ``score >= threshold``."""

    threshold: float
    risk: float
    target: Literal["accepted", "joint"]
    n: int
    n_accepted: int
    n_failures_accepted: int
    bound: float  # the finite-sample corrected risk at the threshold (<= risk)


def _bools(x: Bools, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold booleans or 0/1")
    return arr.astype(bool)


def _floats(x: Floats, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values; drop or impute them first")
    return arr


def _pair(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{names} must have the same length, got {len(a)} and {len(b)}")
    if len(a) == 0:
        raise ValueError(f"{names} are empty")


def wilson(k: int, n: int, conf: float = 0.95) -> Estimate:
    """Wilson score interval for ``k`` successes in ``n`` trials: ``(k / n, lo, hi)``."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    if not 0 < conf < 1:
        raise ValueError(f"conf must lie in (0, 1), got {conf}")
    z = NormalDist().inv_cdf(0.5 + conf / 2)
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if k == 0 else max(0.0, center - half)
    hi = 1.0 if k == n else min(1.0, center + half)
    return Estimate(p, lo, hi, conf)


def mcnemar_exact(a: Bools, b: Bools) -> McNemarResult:
    """Exact two-sided McNemar test (binomial on the discordant pairs, p = 1/2) for paired outcomes."""
    x, y = _bools(a, "a"), _bools(b, "b")
    _pair(x, y, "a and b")
    b01, b10 = int((~x & y).sum()), int((x & ~y).sum())
    m = b01 + b10
    if m == 0:
        return McNemarResult(b01, b10, len(x), 1.0)
    tail = sum(math.comb(m, i) for i in range(min(b01, b10) + 1))  # exact integers
    return McNemarResult(b01, b10, len(x), min(1.0, 2 * tail / 2**m))


def paired_bootstrap_diff(
    a: Floats, b: Floats, n_boot: int = 10_000, seed: int = 0, conf: float = 0.95
) -> Estimate:
    """``mean(a) - mean(b)`` over paired items with a percentile bootstrap interval (items resampled)."""
    x, y = _floats(a, "a"), _floats(b, "b")
    _pair(x, y, "a and b")
    d = x - y
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 1000):  # chunks keep memory at 1000 x n
        rows = min(1000, n_boot - start)
        means[start:start + rows] = d[rng.integers(0, len(d), size=(rows, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - conf) / 2, (1 + conf) / 2])
    return Estimate(float(d.mean()), float(lo), float(hi), conf)


@dataclass(frozen=True, slots=True)
class PairedOutcomes:
    """Pass/fail of ``a`` against ``b`` on the same items: the difference of pass rates with its bootstrap
    interval, the discordant items (``wins``: a passed and b failed) and the exact McNemar p-value."""

    delta: Estimate
    wins: int
    losses: int
    p_value: float


def paired_outcomes(a: Bools, b: Bools, *, n_boot: int = 10_000, seed: int = 0) -> PairedOutcomes:
    """The one paired comparison of binary outcomes (replay, heads, eval summary): bootstrap over items of
    ``mean(a) - mean(b)`` and McNemar's exact test."""
    x, y = _bools(a, "a"), _bools(b, "b")
    mc = mcnemar_exact(x, y)
    return PairedOutcomes(paired_bootstrap_diff(x.astype(float), y.astype(float), n_boot=n_boot, seed=seed),
                          mc.b10, mc.b01, mc.p_value)


def paired_sign_flip(a: Floats, b: Floats, n_perm: int = 100_000, seed: int = 0) -> float:
    """Two-sided p-value that ``mean(a - b)`` is 0, by flipping the sign of each paired difference (the
    randomization test for paired items). Exact when the differences are integers (their sum's null
    distribution is counted by convolution), else estimated from ``n_perm`` random flips."""
    x, y = _floats(a, "a"), _floats(b, "b")
    _pair(x, y, "a and b")
    d = x - y
    observed = abs(float(d.sum()))
    if observed == 0.0:
        return 1.0
    if np.allclose(d, np.round(d)):
        k = np.abs(np.round(d)).astype(int)
        total = int(k.sum())
        counts = np.zeros(2 * total + 1, dtype=object)  # exact integers: the count of sign patterns per sum
        counts[total] = 1
        for v in k[k > 0]:
            counts = np.roll(counts, v) + np.roll(counts, -v)  # wrap-around never reaches the support
        sums = np.arange(-total, total + 1)
        extreme = int(counts[np.abs(sums) >= round(observed)].sum())
        return min(1.0, extreme / (1 << int((k > 0).sum())))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_perm, 1000):
        rows = min(1000, n_perm - start)
        flips = rng.choice((-1.0, 1.0), size=(rows, len(d)))
        hits += int((np.abs((flips * d).sum(axis=1)) >= observed - 1e-12).sum())
    return (hits + 1) / (n_perm + 1)


def difference_of_differences(
    policy_a: Bools, control_a: Bools, policy_b: Bools, control_b: Bools, n_boot: int = 10_000, seed: int = 0
) -> dict[str, float | list[float]]:
    """Did a policy's edge over its control change from setting A to setting B, on the same items?

    Per item, ``(policy_b - control_b) - (policy_a - control_a)`` of pass/fail outcomes: its mean (in
    [-2, 2]; a change in pass-rate points), a paired bootstrap interval and the exact sign-flip p.
    Whatever lifts policy and control alike (a stronger model) cancels."""
    named = {"policy_a": policy_a, "control_a": control_a, "policy_b": policy_b, "control_b": control_b}
    pa, ca, pb, cb = (_bools(x, name).astype(float) for name, x in named.items())
    for x, name in ((ca, "control_a"), (pb, "policy_b"), (cb, "control_b")):
        _pair(pa, x, f"policy_a and {name}")
    edge_a, edge_b = pa - ca, pb - cb
    est = paired_bootstrap_diff(edge_b, edge_a, n_boot=n_boot, seed=seed)
    return {"delta": est.estimate, "ci": [est.lo, est.hi], "p": paired_sign_flip(edge_b, edge_a)}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adj = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adj[i] = running
    return adj


def _midranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    sx = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sx)) + 1]
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)  # 1-based average rank of each tie
    return ranks


def auroc(scores: Floats, labels: Bools) -> float:
    """Probability that a random positive outscores a random negative; ties count 1/2 (Mann-Whitney)."""
    s, y = _floats(scores, "scores"), _bools(labels, "labels")
    _pair(s, y, "scores and labels")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        only = "positives" if n_neg == 0 else "negatives"
        raise ValueError(f"auroc needs both classes, got only {only} (n={len(y)})")
    rank_sum = float(_midranks(s)[y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auroc_bootstrap(
    scores: Floats, labels: Bools, n_boot: int = 2000, seed: int = 0, conf: float = 0.95
) -> Estimate:
    """AUROC with a percentile bootstrap interval; positives and negatives are resampled separately."""
    s, y = _floats(scores, "scores"), _bools(labels, "labels")
    point = auroc(s, y)
    pos, neg = s[y], s[~y]
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    lab = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    for i in range(n_boot):
        sample = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        stats[i] = auroc(sample, lab)
    lo, hi = np.quantile(stats, [(1 - conf) / 2, (1 + conf) / 2])
    return Estimate(point, float(lo), float(hi), conf)


def _probs(probs: Floats, labels: Bools) -> tuple[np.ndarray, np.ndarray]:
    p, y = _floats(probs, "probs"), _bools(labels, "labels")
    _pair(p, y, "probs and labels")
    if ((p < 0) | (p > 1)).any():
        raise ValueError("probs must lie in [0, 1]; map scores to probabilities first")
    return p, y


def brier(probs: Floats, labels: Bools) -> float:
    """Mean squared error of predicted probabilities against 0/1 outcomes (0 is perfect)."""
    p, y = _probs(probs, labels)
    return float(np.mean((p - y) ** 2))


def reliability_bins(
    probs: Floats, labels: Bools, n_bins: int = 10
) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1] with each bin's mean predicted probability and observed frequency."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    p, y = _probs(probs, labels)
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    bins = []
    for i in range(n_bins):
        m = idx == i
        count = int(m.sum())
        bins.append(ReliabilityBin(
            i / n_bins, (i + 1) / n_bins, count,
            float(p[m].mean()) if count else None, float(y[m].mean()) if count else None,
        ))
    return bins


def expected_calibration_error(probs: Floats, labels: Bools, n_bins: int = 10) -> float:
    """Count-weighted mean of |observed frequency - mean probability| over the reliability bins."""
    bins = reliability_bins(probs, labels, n_bins)
    total = sum(b.count for b in bins)
    return sum(b.count * abs(b.frac_positive - b.mean_prob) for b in bins
               if b.frac_positive is not None and b.mean_prob is not None) / total


def conformal_threshold(
    scores: Floats,
    labels: Bools,
    risk: float = 0.1,
    *,
    target: Literal["accepted", "joint"] = "accepted",
) -> ConformalThreshold | None:
    """The smallest threshold ``t`` (an observed score) whose finite-sample corrected risk is <= ``risk``.

    ``labels[i]`` is True when calibration item ``i`` succeeded; items with ``score >= t`` are accepted.
    With ``m`` accepted items of which ``f`` failed, out of ``n``:

    - ``target="accepted"``: the failure rate among accepted items, corrected as ``(f + 1) / (m + 1)``
      (the new item counted as one more accepted failure: split-conformal's +1).
    - ``target="joint"``: conformal risk control (Angelopoulos et al., 2022) of the loss
      ``1[accepted and failed]``: ``(f + 1) / (n + 1) <= risk`` guarantees ``P(accepted and failed) <= risk``
      for an exchangeable new item (the loss is monotone in ``t``, as the method requires).

    Returns None when no threshold achieves the risk (then always run the tests).
    """
    if not 0 < risk < 1:
        raise ValueError(f"risk must lie in (0, 1), got {risk}")
    s, y = _floats(scores, "scores"), _bools(labels, "labels")
    _pair(s, y, "scores and labels")
    n = len(s)
    order = np.argsort(-s, kind="mergesort")
    ss, fail = s[order], ~y[order]
    cum_fail = np.cumsum(fail)
    best: ConformalThreshold | None = None
    for i in range(n):  # walk thresholds from high to low; the last one that passes is the smallest
        if i + 1 < n and ss[i + 1] == ss[i]:
            continue  # ties are accepted together
        m, f = i + 1, int(cum_fail[i])
        bound = (f + 1) / (m + 1) if target == "accepted" else (f + 1) / (n + 1)
        if bound <= risk:
            best = ConformalThreshold(float(ss[i]), risk, target, n, m, f, bound)
    return best


def logistic_regression(
    x: np.ndarray, y: Floats, *, l2: float, standardize: bool = False, tol: float = 1e-10, iters: int = 100,
) -> tuple[np.ndarray, float]:
    """L2-penalized logistic regression, exact (Newton's method to ``tol``): the weights ``w`` and intercept ``b``
    minimizing ``sum_i logloss(y_i, x_i . w + b) + l2 / 2 * |w|^2`` (the intercept unpenalized; sklearn's
    ``LogisticRegression(C=1 / l2)`` optimum). ``standardize`` puts the penalty on standardized features and
    returns the weights in ``x``'s own units. When features outnumber rows it solves in the rows' span, where
    the optimum lies (the representer theorem), so a residual-sized probe on a few hundred samples is cheap.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"logistic_regression needs x (n, d) and y (n,), got {x.shape} and {y.shape}")
    mu = x.mean(0)
    sd = x.std(0) if standardize else np.ones(x.shape[1])
    sd[sd == 0] = 1.0
    z = (x - mu) / sd
    basis = None
    if z.shape[1] > z.shape[0]:  # many features: coordinates of the rows in their own span
        ev, u = np.linalg.eigh(z @ z.T)
        keep = ev > max(float(ev.max()), 1e-30) * 1e-10
        basis = u[:, keep] / np.sqrt(ev[keep])  # (n, k): z.T @ basis is an orthonormal basis of the span
        z = u[:, keep] * np.sqrt(ev[keep])
    n, k = z.shape
    a = np.hstack([z, np.ones((n, 1))])
    theta = np.zeros(k + 1)
    reg = np.full(k + 1, float(l2))
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ theta, -30, 30)))
        grad = a.T @ (p - y) + reg * theta
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < tol:
            break
    w = theta[:-1]
    if basis is not None:
        w = ((x - mu) / sd).T @ (basis @ w)
    w = w / sd
    return w, float(theta[-1] - mu @ w)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` passed (Chen et al., 2021): 1 - C(n-c, k)/C(n, k)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)
