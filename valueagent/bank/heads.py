"""Value heads: readouts trained on the model's own attempts, judged by how well they choose among samples.

Data: a *fit* bank (MBPP train + validation) and one or more *test* banks (MBPP test; HumanEval for
transfer), each encoded (``bank encode``). A head maps a sample's residual features to a score (higher =
more likely to pass the hidden tests). Families, each one factory below:

- ``probe-mean@L`` / ``probe-last@L``: L2 logistic regression on one layer's mean residual over the
  sample's generated tokens, or on its last token's residual;
- ``multi-mean``: one logistic regression on several layers' means side by side;
- ``mlp-mean@L``: a small MLP (SCATR-style shallow head; one hidden layer, early stopping);
- ``X+logprob``: the same head with the sample's mean log-prob and DeepConf confidence as two more inputs;
- ``X|logprob``: late fusion, z(head) + z(log-prob), z-scored on the fit samples (nothing more fitted).

Protocol (:mod:`valueagent.bank.head_protocol`; never fit on a task that is scored): every configuration
is fitted on MBPP train and scored on MBPP validation by **within-task** AUROC (tasks whose fresh samples
disagree); the best configuration of each family is refitted on train + validation and scored once on each
test bank. Training on features centred per task (``centre=True``) removes what separates tasks
(difficulty) and keeps what separates samples of one task; both are tried on validation and the choice is
reported. A centred head also scores centred inputs: each task's own samples set the centre (no labels),
which is what a best-of-N ranker sees; for a linear head it changes no ranking within a task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from valueagent.bank.encode import check_encoded, load_features
from valueagent.bank.store import Bank
from valueagent.signals import FIXED
from valueagent.stats import auroc, logistic_regression

__all__ = ["Head", "HeadSpec", "SampleSet", "fit_head", "load_samples", "within_task_auroc"]


@dataclass(frozen=True)
class SampleSet:
    """Every sample of some tasks: ids, labels, fixed signals and (lazily indexed) residual features."""

    task_ids: np.ndarray  # (n,) str
    index: np.ndarray  # (n,) sample index in its task (0 = greedy)
    y: np.ndarray  # (n,) bool, hidden tests passed (labels: fitting and scoring only)
    mean: np.ndarray  # (n, L+1, H) float16
    last: np.ndarray  # (n, L+1, H) float16
    fixed: Mapping[str, np.ndarray]  # signal name -> (n,)

    def __len__(self) -> int:
        return len(self.y)

    def where(self, mask: np.ndarray) -> SampleSet:
        return SampleSet(self.task_ids[mask], self.index[mask], self.y[mask], self.mean[mask], self.last[mask],
                         {k: v[mask] for k, v in self.fixed.items()})

    def fresh(self) -> SampleSet:
        """Samples 1..N (the greedy answer is not one of the N a ranker chooses among)."""
        return self.where(self.index > 0)


def load_samples(bank: Bank, task_ids: Sequence[str] | None = None, *, features: bool = True) -> SampleSet:
    """The samples of ``bank`` (of ``task_ids`` if given) with their features; an error names the encode
    command when a task has none. ``features=False``: labels and fixed signals only (judging scores made
    elsewhere needs no residuals)."""
    records = [r for r in bank if task_ids is None or r["task_id"] in set(task_ids)]
    if features:
        check_encoded(bank.root, [r["task_id"] for r in records])
    ids, idx, ys, means, lasts = [], [], [], [], []
    fixed: dict[str, list[float]] = {name: [] for name in FIXED}
    for rec in records:
        for i, s in enumerate(rec["samples"]):
            ids.append(rec["task_id"])
            idx.append(i)
            ys.append(bool(s["hidden_passed"]))
            for name, fn in FIXED.items():
                fixed[name].append(fn(s) if s["token_ids"] else -1e3)
        if features:
            feats = load_features(bank.root, rec["task_id"])
            means.append(feats.mean)
            lasts.append(feats.last)
        else:
            means.append(np.zeros((len(rec["samples"]), 0, 0), dtype=np.float16))
            lasts.append(means[-1])
    return SampleSet(np.asarray(ids), np.asarray(idx), np.asarray(ys), np.concatenate(means),
                     np.concatenate(lasts), {k: np.asarray(v) for k, v in fixed.items()})


def within_task_auroc(scores: np.ndarray, data: SampleSet) -> dict[str, float]:
    """Per task with mixed outcomes among its fresh samples: AUROC of ``scores`` (``task -> AUROC``)."""
    out = {}
    fresh = data.index > 0
    for tid in dict.fromkeys(data.task_ids.tolist()):
        m = fresh & (data.task_ids == tid)
        y = data.y[m]
        if 0 < y.sum() < len(y):
            out[tid] = auroc(scores[m], y)
    return out


def _centred(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    out = x.copy()
    for g in np.unique(groups):
        m = groups == g
        out[m] -= x[m].mean(0)
    return out


@dataclass(frozen=True, kw_only=True)
class HeadSpec:
    """One head configuration: family, input, layer(s), regularisation, centring, extra log-prob inputs."""

    family: str  # "probe" | "mlp"
    source: str = "mean"  # "mean" | "last"
    layers: tuple[int, ...] = (14,)
    c: float = 0.01  # logistic inverse L2 strength, or the MLP's alpha = 1 / c
    centre: bool = True
    extras: tuple[str, ...] = ()  # fixed signals appended as inputs ("logprob", "confidence")
    fusion: bool = False  # late fusion with log-prob instead of a fitted combination

    @property
    def name(self) -> str:
        where = (f"@{self.layers[0]}" if len(self.layers) == 1 else f"@{'+'.join(map(str, self.layers))}")
        base = f"{self.family}-{self.source}{where}"
        return base + ("+logprob" if self.extras else "") + ("|logprob" if self.fusion else "")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "source": self.source, "layers": list(self.layers),
                "c": self.c, "centre": self.centre, "extras": list(self.extras), "fusion": self.fusion}


def _inputs(spec: HeadSpec, data: SampleSet) -> np.ndarray:
    feats = data.mean if spec.source == "mean" else data.last
    x = feats[:, list(spec.layers), :].astype(np.float32).reshape(len(data), -1)
    if spec.extras:
        x = np.concatenate([x, np.stack([data.fixed[e] for e in spec.extras], 1).astype(np.float32)], 1)
    return x


@dataclass(frozen=True)
class LinearModel:
    """A fitted logistic regression (:func:`valueagent.stats.logistic_regression`) on standardized inputs."""

    coef: np.ndarray
    intercept: float

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x @ self.coef + self.intercept, dtype=np.float64)


@dataclass
class Head:
    """A fitted head: ``score(data)`` gives one number per sample (higher = more likely to pass)."""

    spec: HeadSpec
    mean: np.ndarray
    scale: np.ndarray
    model: Any
    fusion_stats: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 1.0)
    info: dict[str, Any] = field(default_factory=dict)

    def raw(self, data: SampleSet) -> np.ndarray:
        x = _inputs(self.spec, data)
        if self.spec.centre:  # the task's own samples set the centre (no labels): what a best-of-N ranker sees
            x = _centred(x, data.task_ids)
        x = (x - self.mean) / self.scale
        if hasattr(self.model, "decision_function"):
            return np.asarray(self.model.decision_function(x), dtype=np.float64)
        p = np.clip(self.model.predict_proba(x)[:, 1], 1e-9, 1 - 1e-9)
        return np.asarray(np.log(p / (1 - p)), dtype=np.float64)

    def score(self, data: SampleSet) -> np.ndarray:
        s = self.raw(data)
        if not self.spec.fusion:
            return s
        hm, hs, lm, ls = self.fusion_stats
        return (s - hm) / hs + (data.fixed["logprob"] - lm) / ls

    def direction(self) -> np.ndarray:
        """A single-layer linear head as a direction in raw residual space (``coef / scale``)."""
        if self.spec.family != "probe" or len(self.spec.layers) != 1 or self.spec.extras:
            raise ValueError(f"{self.spec.name} is not a single-layer linear head: it has no direction")
        return np.asarray(self.model.coef / self.scale, dtype=np.float64)


def fit_head(spec: HeadSpec, data: SampleSet, *, seed: int = 0) -> Head:
    """Fit ``spec`` on ``data`` (fresh samples and greedy answers alike; labels are the hidden verdicts)."""
    from sklearn.neural_network import MLPClassifier

    x = _inputs(spec, data)
    y = data.y
    if spec.centre:  # only tasks whose samples disagree carry within-task information
        keep = np.isin(data.task_ids, [t for t in np.unique(data.task_ids)
                                       if 0 < y[data.task_ids == t].sum() < (data.task_ids == t).sum()])
        x, y, groups = x[keep], y[keep], data.task_ids[keep]
        x = _centred(x, groups)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / scale
    if spec.family == "probe":
        model: Any = LinearModel(*logistic_regression(z, y, l2=1.0 / spec.c))
    elif spec.family == "mlp":
        model = MLPClassifier(hidden_layer_sizes=(64,), alpha=1.0 / spec.c, early_stopping=True, max_iter=300,
                              random_state=seed).fit(z, y)
    else:
        raise ValueError(f"unknown head family {spec.family!r}: probe or mlp")
    head = Head(replace(spec), mean, scale, model, info={"n_fit": int(len(y)), "positives": int(y.sum())})
    if spec.fusion:
        s = head.raw(data)
        lp = data.fixed["logprob"]
        head.fusion_stats = (float(s.mean()), float(s.std() + 1e-9), float(lp.mean()), float(lp.std() + 1e-9))
    return head
