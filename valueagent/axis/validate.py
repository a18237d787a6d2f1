"""Validation of value readings against the controls that explain them away.

Every number comes with its controls: the mean over >= 10 seeded random directions (signed, and
"oriented" = the better of AUROC and 1 - AUROC, which is what a direction chosen by its sign could
reach by chance), token position alone, and the model's mean token log-probability.

- Token level (held-out criteria): AUROC of per-token cosines, "after" tokens vs "before" tokens,
  and the same AUROC restricted to pairs of tokens at matched paragraph-relative positions (the
  paper's position confound removed).
- Text level: paired win rate and AUROC of mean cosines (matched contrasts, correct vs corrupted
  code, ...), log-probability alone, and value and log-probability combined by a cross-validated
  logistic regression.

Shapes: ``unit`` token tables are (N, L, H) unit vectors; directions (L, H) or (K, H).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from valueagent.axis.estimators import _group_folds, logistic_fit, random_directions, unit
from valueagent.stats import auroc

N_RANDOM = 16


def oriented(a: float) -> float:
    """The better of ``a`` and ``1 - a``: what picking a predictor's sign after seeing the data gives."""
    return max(a, 1.0 - a)


def safe_auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """AUROC, or None when a class is missing."""
    y = np.asarray(labels, dtype=bool)
    if y.all() or not y.any():
        return None
    return float(auroc(np.asarray(scores, dtype=float), y))


def matched_auroc(scores: np.ndarray, labels: np.ndarray, strata: np.ndarray) -> float | None:
    """AUROC over positive/negative pairs in the same stratum (e.g. the same position bin):
    the pair-weighted mean of within-stratum AUROCs."""
    y = np.asarray(labels, dtype=bool)
    num = den = 0.0
    for s in np.unique(strata):
        m = strata == s
        n_pos, n_neg = int(y[m].sum()), int((~y[m]).sum())
        if n_pos and n_neg:
            a = auroc(scores[m], y[m])
            num += a * n_pos * n_neg
            den += n_pos * n_neg
    return num / den if den else None


def position_bins(rel_pos: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Stratum index of paragraph-relative positions in [0, 1]."""
    bins: np.ndarray = np.minimum((np.asarray(rel_pos) * n_bins).astype(int), n_bins - 1)
    return bins


@dataclass(frozen=True)
class TokenTable:
    """Tokens of held-out episodes: unit hidden states and what each token is."""

    unit: np.ndarray  # (N, L, H) float16, unit-normalized
    label: np.ndarray  # (N,) bool: True = after the satisfying text
    rel_pos: np.ndarray  # (N,) position in the paragraph, 0..1
    abs_pos: np.ndarray  # (N,) token index in the text
    logprob: np.ndarray  # (N,) the token's log-probability
    episode: np.ndarray  # (N,) episode index
    layers: tuple[int, ...]


def _cos(table: TokenTable, li: int, dirs: np.ndarray) -> np.ndarray:
    cos: np.ndarray = table.unit[:, li, :].astype(np.float32) @ unit(dirs.astype(np.float32)).T  # (N, K)
    return cos


def token_controls(table: TokenTable, *, n_random: int = N_RANDOM, seed: int = 0) -> dict[str, object]:
    """Controls that need no direction, plus random directions per layer."""
    y, strata = table.label, position_bins(table.rel_pos)
    out: dict[str, object] = {
        "n_tokens": int(len(y)),
        "n_after": int(y.sum()),
        "n_episodes": int(len(np.unique(table.episode))),
        "position_rel_auroc": safe_auroc(table.rel_pos, y),
        "position_abs_auroc": safe_auroc(table.abs_pos, y),
        "logprob_auroc_oriented": oriented(safe_auroc(table.logprob, y) or 0.5),
        "logprob_matched_auroc_oriented": oriented(matched_auroc(table.logprob, y, strata) or 0.5),
    }
    rnd = random_directions(table.unit.shape[2], n_random, seed=seed)
    per_layer = []
    for li in range(len(table.layers)):
        cos = _cos(table, li, rnd)
        a = [safe_auroc(cos[:, k], y) or 0.5 for k in range(n_random)]
        m = [matched_auroc(cos[:, k], y, strata) or 0.5 for k in range(n_random)]
        per_layer.append({
            "random_auroc_mean": float(np.mean(a)),
            "random_auroc_oriented_mean": float(np.mean([oriented(x) for x in a])),
            "random_matched_auroc_oriented_mean": float(np.mean([oriented(x) for x in m])),
            "random_matched_auroc_oriented_p95": float(np.quantile([oriented(x) for x in m], 0.95)),
        })
    out["per_layer"] = per_layer
    return out


def token_scores(table: TokenTable, directions: np.ndarray) -> list[dict[str, Any]]:
    """Per layer: token AUROC and matched-position AUROC of a direction (L, H) (sign as built)."""
    strata = position_bins(table.rel_pos)
    out = []
    for li, layer in enumerate(table.layers):
        c = _cos(table, li, directions[layer][None, :])[:, 0]
        out.append({
            "auroc": safe_auroc(c, table.label),
            "matched_auroc": matched_auroc(c, table.label, strata),
        })
    return out


# -- text level -------------------------------------------------------------------------------------


def mean_cosines(mean_unit: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Mean per-token cosine of each text with ``direction`` (H,): ``mean_unit`` is (N, H)."""
    cos: np.ndarray = mean_unit.astype(np.float64) @ unit(direction.astype(np.float64))
    return cos


def paired(pos: np.ndarray, neg: np.ndarray) -> dict[str, float | int | None]:
    """Paired comparison: share of pairs where the positive reads higher (ties 1/2) and pooled AUROC."""
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    if len(pos) == 0:
        return {"n_pairs": 0, "win_rate": None, "auroc": None}
    wins = float(np.mean((pos > neg) + 0.5 * (pos == neg)))
    labels = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    return {"n_pairs": int(len(pos)), "win_rate": wins, "auroc": safe_auroc(np.r_[pos, neg], labels)}


def random_paired(
    mean_unit_pos: np.ndarray, mean_unit_neg: np.ndarray, *, n_random: int = N_RANDOM, seed: int = 0
) -> dict[str, float]:
    """Random-direction control for a paired comparison: mean win rate and mean oriented win rate."""
    rnd = random_directions(mean_unit_pos.shape[1], n_random, seed=seed)
    wins = [paired(mean_cosines(mean_unit_pos, d), mean_cosines(mean_unit_neg, d))["win_rate"] for d in rnd]
    w = [float(x) for x in wins if x is not None]
    aucs = [
        paired(mean_cosines(mean_unit_pos, d), mean_cosines(mean_unit_neg, d))["auroc"] for d in rnd
    ]
    a = [float(x) for x in aucs if x is not None]
    return {
        "random_win_rate_mean": float(np.mean(w)) if w else 0.5,
        "random_win_rate_oriented_mean": float(np.mean([oriented(x) for x in w])) if w else 0.5,
        "random_auroc_oriented_mean": float(np.mean([oriented(x) for x in a])) if a else 0.5,
    }


def random_auroc(
    mean_unit: np.ndarray, labels: np.ndarray, *, n_random: int = N_RANDOM, seed: int = 0
) -> dict[str, float]:
    """Random-direction control for an unpaired AUROC over texts."""
    rnd = random_directions(mean_unit.shape[1], n_random, seed=seed)
    a = [safe_auroc(mean_cosines(mean_unit, d), labels) or 0.5 for d in rnd]
    return {
        "random_auroc_mean": float(np.mean(a)),
        "random_auroc_oriented_mean": float(np.mean([oriented(x) for x in a])),
    }


def crossval_combined(
    features: np.ndarray, labels: np.ndarray, groups: Sequence[object] | np.ndarray, *, k: int = 5, seed: int = 0
) -> np.ndarray:
    """Out-of-fold probabilities of a logistic regression on standardized ``features`` (N, F), folds
    grouped (a pair or a task never straddles train and test)."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    g = np.asarray(groups)
    out = np.zeros(len(y))
    for test in _group_folds(g, k, seed):
        train = ~test
        if len(np.unique(y[train])) < 2:
            out[test] = 0.5
            continue
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-12
        w, b = logistic_fit((x[train] - mu) / sd, y[train], 1e-2)
        out[test] = 1.0 / (1.0 + np.exp(-(((x[test] - mu) / sd) @ w + b)))
    return out


def value_logprob_combined(
    value: np.ndarray, logprob: np.ndarray, labels: np.ndarray, groups: Sequence[object] | np.ndarray
) -> dict[str, float | None]:
    """AUROC of value alone, log-probability alone and both (cross-validated logistic) for labels."""
    combo = crossval_combined(np.c_[value, logprob], labels, groups)
    return {
        "value_auroc": safe_auroc(value, labels),
        "logprob_auroc": safe_auroc(logprob, labels),
        "combined_auroc": safe_auroc(combo, labels),
    }
