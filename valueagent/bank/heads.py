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

Protocol (never fit on a task that is scored): every configuration is fitted on MBPP train and scored on
MBPP validation by **within-task** AUROC (tasks whose fresh samples disagree); the best configuration of
each family is refitted on train + validation and scored once on each test bank. Training on features
centred per task (``centre=True``) removes what separates tasks (difficulty) and keeps what separates
samples of one task; both are tried on validation and the choice is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from valueagent.bank.encode import check_encoded, load_features
from valueagent.bank.store import Bank
from valueagent.signals import FIXED
from valueagent.stats import auroc

Scorer = Callable[["SampleSet"], np.ndarray]

__all__ = ["HeadSpec", "SampleSet", "fit_head", "load_samples", "within_task_auroc"]


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


def load_samples(bank: Bank, task_ids: Sequence[str] | None = None) -> SampleSet:
    """The samples of ``bank`` (of ``task_ids`` if given) with their features; an error names the encode
    command when a task has none."""
    records = [r for r in bank if task_ids is None or r["task_id"] in set(task_ids)]
    check_encoded(bank.root, [r["task_id"] for r in records])
    ids, idx, ys, means, lasts = [], [], [], [], []
    fixed: dict[str, list[float]] = {name: [] for name in FIXED}
    for rec in records:
        feats = load_features(bank.root, rec["task_id"])
        for i, s in enumerate(rec["samples"]):
            ids.append(rec["task_id"])
            idx.append(i)
            ys.append(bool(s["hidden_passed"]))
            for name, fn in FIXED.items():
                fixed[name].append(fn(s) if s["token_ids"] else -1e3)
        means.append(feats.mean)
        lasts.append(feats.last)
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
        return np.asarray(self.model.coef_[0] / self.scale, dtype=np.float64)


def fit_head(spec: HeadSpec, data: SampleSet, *, seed: int = 0) -> Head:
    """Fit ``spec`` on ``data`` (fresh samples and greedy answers alike; labels are the hidden verdicts)."""
    from sklearn.linear_model import LogisticRegression
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
        model: Any = LogisticRegression(C=spec.c, max_iter=3000).fit(z, y)
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


# ---------------------------------------------------------------------------------------- the protocol

BASELINES = ("logprob", "confidence", "value", "entropy")
"""Fixed signals every head is judged beside (``valueagent.signals.FIXED``); ``random`` is added."""


def _random(data: SampleSet, seed: int) -> np.ndarray:
    from valueagent.signals import uniform_draw

    return np.asarray([uniform_draw(seed, str(t), int(i)) for t, i in zip(data.task_ids, data.index, strict=True)])


def mean_within(scores: np.ndarray, data: SampleSet) -> float:
    per = within_task_auroc(scores, data)
    return float(np.mean(list(per.values()))) if per else float("nan")


def candidate_specs(n_layers: int) -> dict[str, list[HeadSpec]]:
    """The configurations tried on validation, by family (layers 1..L; 0 is the embeddings)."""
    layers = range(1, n_layers)
    grid = (0.001, 0.01, 0.1)
    return {
        "probe-mean": [HeadSpec(family="probe", source="mean", layers=(L,), c=c, centre=ce)
                       for L in layers for c in grid for ce in (True, False)],
        "probe-last": [HeadSpec(family="probe", source="last", layers=(L,), c=c, centre=True)
                       for L in layers for c in grid],
    }


def select(specs: Sequence[HeadSpec], fit: SampleSet, val: SampleSet) -> tuple[HeadSpec, list[dict[str, Any]]]:
    """The spec with the best within-task AUROC on ``val`` after fitting on ``fit``, and every row tried."""
    rows = []
    for spec in specs:
        head = fit_head(spec, fit)
        rows.append({**spec.to_dict(), "val_within": mean_within(head.score(val), val)})
    best = max(range(len(specs)), key=lambda i: (np.nan_to_num(rows[i]["val_within"], nan=-1.0), -i))
    return specs[best], rows


def choose_heads(fit: SampleSet, val: SampleSet) -> tuple[list[HeadSpec], dict[str, Any]]:
    """Every family's best configuration, chosen on validation only, and the sweep that chose it."""
    n_layers = fit.mean.shape[1]
    cands = candidate_specs(n_layers)
    best_mean, rows_mean = select(cands["probe-mean"], fit, val)
    best_last, rows_last = select(cands["probe-last"], fit, val)
    by_layer = sorted(rows_mean, key=lambda r: -np.nan_to_num(r["val_within"], nan=-1.0))
    top_layers: list[int] = []
    for r in by_layer:
        if r["layers"][0] not in top_layers:
            top_layers.append(r["layers"][0])
        if len(top_layers) == 4:
            break
    multi, rows_multi = select([HeadSpec(family="probe", source="mean", layers=tuple(sorted(top_layers)), c=c,
                                         centre=best_mean.centre) for c in (0.0003, 0.001, 0.01)], fit, val)
    mlp, rows_mlp = select([HeadSpec(family="mlp", source="mean", layers=best_mean.layers, c=c,
                                     centre=best_mean.centre) for c in (0.01, 0.1, 1.0)], fit, val)
    chosen = [best_mean, best_last, multi, mlp]
    chosen += [replace(s, extras=("logprob", "confidence")) for s in chosen[:4]]
    chosen += [replace(s, fusion=True) for s in chosen[:4]]
    sweep = {"probe-mean": rows_mean, "probe-last": rows_last, "multi-mean": rows_multi, "mlp-mean": rows_mlp,
             "extras_and_fusion": [{**s.to_dict(), "val_within": mean_within(fit_head(s, fit).score(val), val)}
                                   for s in chosen[4:]]}
    return chosen, sweep


def baseline_scores(data: SampleSet, seed: int) -> dict[str, np.ndarray]:
    return {**{b: np.asarray(data.fixed[b], dtype=np.float64) for b in BASELINES}, "random": _random(data, seed)}


def _top1(scores: np.ndarray, data: SampleSet) -> dict[str, bool]:
    """Best of the fresh samples by ``scores`` (earliest on ties), untested: task -> passed."""
    out = {}
    for tid in dict.fromkeys(data.task_ids.tolist()):
        m = np.flatnonzero((data.task_ids == tid) & (data.index > 0))
        if len(m):
            best = m[np.lexsort((data.index[m], -scores[m]))[0]]
            out[tid] = bool(data.y[best])
    return out


def judge(scores: Mapping[str, np.ndarray], data: SampleSet, *, reference: str = "logprob",
          n_boot: int = 10_000) -> dict[str, Any]:
    """Per signal on one test set: within-task AUROC (mean over mixed tasks, bootstrap CI over tasks), pooled
    AUROC of fresh samples (CI), best of N untested; each against ``reference`` paired by task (bootstrap CI,
    exact sign-flip p / McNemar), Holm over the signals compared."""
    from valueagent.stats import (
        auroc_bootstrap,
        holm,
        mcnemar_exact,
        paired_bootstrap_diff,
        paired_sign_flip,
        wilson,
    )

    fresh = data.fresh()
    per_within = {name: within_task_auroc(s, data) for name, s in scores.items()}
    per_top = {name: _top1(s, data) for name, s in scores.items()}
    tasks = sorted(per_within[reference])
    all_tasks = sorted(per_top[reference])
    oracle = [bool(data.y[(data.task_ids == t) & (data.index > 0)].any()) for t in all_tasks]
    out: dict[str, Any] = {"n_tasks": len(all_tasks), "mixed_tasks": len(tasks), "n_fresh": len(fresh),
                           "fresh_pass_rate": float(fresh.y.mean()), "reference": reference,
                           "oracle_best_of_n": float(np.mean(oracle)), "signals": {}}
    p_within, p_top = {}, {}
    for name, s in scores.items():
        w = np.asarray([per_within[name][t] for t in tasks])
        top = np.asarray([per_top[name][t] for t in all_tasks])
        pooled = auroc_bootstrap(s[data.index > 0], fresh.y, n_boot=1000)
        w_ci = paired_bootstrap_diff(w, np.zeros_like(w), n_boot=n_boot)
        k = int(top.sum())
        t_ci = wilson(k, len(top))
        row: dict[str, Any] = {
            "within_task_auroc": float(w.mean()), "within_task_ci": [w_ci.lo, w_ci.hi],
            "pooled_auroc": pooled.estimate, "pooled_ci": [pooled.lo, pooled.hi],
            "best_of_n": k / len(top), "best_of_n_ci": [t_ci.lo, t_ci.hi],
        }
        if name != reference:
            ref_w = np.asarray([per_within[reference][t] for t in tasks])
            ref_top = np.asarray([per_top[reference][t] for t in all_tasks])
            dw = paired_bootstrap_diff(w, ref_w, n_boot=n_boot)
            dt = paired_bootstrap_diff(top.astype(float), ref_top.astype(float), n_boot=n_boot)
            mc = mcnemar_exact(top, ref_top)
            p_within[name] = paired_sign_flip(w, ref_w)
            p_top[name] = mc.p_value
            row["vs_reference"] = {
                "within_delta": dw.estimate, "within_ci": [dw.lo, dw.hi], "within_p": p_within[name],
                "best_of_n_delta": dt.estimate, "best_of_n_ci": [dt.lo, dt.hi], "wins": mc.b10, "losses": mc.b01,
                "best_of_n_p": mc.p_value,
            }
        out["signals"][name] = row
    for ps, key in ((p_within, "within_p_holm"), (p_top, "best_of_n_p_holm")):
        for name, adj in zip(ps, holm(list(ps.values())), strict=True):
            out["signals"][name]["vs_reference"][key] = adj
    return out


def layer_curves(fit: SampleSet, test: SampleSet, sweep: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Within-task AUROC on ``test`` of the mean- and last-token probe at every layer, each layer with the C
    (and centring) its validation score chose, fitted on ``fit``: the by-layer picture (not a selection)."""
    out: dict[str, Any] = {}
    for family, source in (("probe-mean", "mean"), ("probe-last", "last")):
        best: dict[int, Mapping[str, Any]] = {}
        for r in sweep[family]:
            L = r["layers"][0]
            if L not in best or np.nan_to_num(r["val_within"], nan=-1) > np.nan_to_num(best[L]["val_within"], nan=-1):
                best[L] = r
        out[source] = {L: {"val": best[L]["val_within"],
                           "test": mean_within(fit_head(HeadSpec(family="probe", source=source, layers=(L,),
                                                                 c=best[L]["c"], centre=best[L]["centre"]),
                                                        fit).score(test), test)}
                       for L in sorted(best)}
    return out


def fit_split(bank: Bank) -> tuple[list[str], list[str]]:
    """The fit bank's tasks as (train, validation): MBPP's standard split by task id."""
    from valueagent.mbpp import TASK_PREFIX, split_of

    ids = [r["task_id"] for r in bank]
    if not all(t.startswith(TASK_PREFIX) for t in ids):
        raise ValueError(f"the fit bank {bank.root} must hold MBPP train/validation tasks (its split chooses the "
                         "heads); build one with `valueagent bank build mbpp --split train+validation`")
    if scored := [t for t in ids if split_of(t) not in ("train", "validation")]:
        raise ValueError(f"the fit bank {bank.root} holds MBPP {split_of(scored[0])} tasks (e.g. {scored[0]}): heads "
                         "are fitted on train and validation only; build one with `valueagent bank build mbpp "
                         "--split train+validation`")
    train = [t for t in ids if split_of(t) == "train"]
    val = [t for t in ids if split_of(t) == "validation"]
    if not train or not val:
        raise ValueError(f"the fit bank {bank.root} needs tasks of both MBPP train and validation "
                         f"({len(train)} train, {len(val)} validation)")
    return train, val


def check_banks(fit: Bank, tests: Mapping[str, Bank]) -> None:
    """Same model in every bank, and no scored task among the fitted ones: errors that name the fix."""
    fit_ids = {r["task_id"] for r in fit}
    for label, bank in tests.items():
        m, f = bank.manifest, fit.manifest
        if (m.model_id, m.revision) != (f.model_id, f.revision):
            raise ValueError(f"test bank {label} ({bank.root}) was sampled from {m.model_id}, the fit bank from "
                             f"{f.model_id}: a head reads one model's residuals; use banks of one model")
        if overlap := fit_ids & {r["task_id"] for r in bank}:
            raise ValueError(f"test bank {label} holds {len(overlap)} tasks the heads are fitted on (e.g. "
                             f"{sorted(overlap)[0]}): score heads on tasks they never saw (MBPP test, HumanEval)")


def run_heads(fit_bank: Bank, tests: Mapping[str, Bank], *, seed: int = 0, n_boot: int = 10_000,
              progress: Callable[[str], None] | None = None) -> tuple[dict[str, Any], dict[str, Head]]:
    """The whole protocol (module docstring): choose on validation, refit on train + validation, judge once
    on every test bank. Returns the result document and the final heads by name."""
    say = progress or (lambda _: None)
    check_banks(fit_bank, tests)
    train_ids, val_ids = fit_split(fit_bank)
    full = load_samples(fit_bank)
    train, val = full.where(np.isin(full.task_ids, train_ids)), full.where(np.isin(full.task_ids, val_ids))
    for bank in tests.values():  # before any fitting: a missing encode is named at once
        check_encoded(bank.root, [r["task_id"] for r in bank])
    say(f"fit bank: {len(train)} train samples ({len(train_ids)} tasks), {len(val)} validation ({len(val_ids)})")
    chosen, sweep = choose_heads(train, val)
    say("chosen on validation: " + ", ".join(s.name for s in chosen))
    heads = {s.name: fit_head(s, full, seed=seed) for s in chosen}
    say("out-of-fold scores of the fit bank (for sequential thresholds in `bank replay --calibration-bank`)")
    oof = cross_fitted_scores(chosen, full, seed=seed)
    doc: dict[str, Any] = {
        "fit_bank": str(fit_bank.root), "model_id": fit_bank.manifest.model_id,
        "revision": fit_bank.manifest.revision, "quantization": fit_bank.manifest.quantization,
        "fit": {"train_tasks": len(train_ids), "validation_tasks": len(val_ids), "samples": len(full)},
        "chosen": [s.to_dict() for s in chosen], "sweep": sweep,
        "validation_baselines": {b: mean_within(s, val) for b, s in baseline_scores(val, seed).items()},
        "tests": {}, "scores": {FIT_SCORES: {**scores_document(fit_bank, full, oof), "cross_fitted_folds": FOLDS}},
    }
    for label, bank in tests.items():
        data = load_samples(bank)
        say(f"test {label}: {len(data)} samples of {len(bank)} tasks")
        own = {name: h.score(data) for name, h in heads.items()}
        doc["tests"][label] = {"bank": str(bank.root), **judge({**baseline_scores(data, seed), **own}, data,
                                                               n_boot=n_boot),
                               "by_layer": layer_curves(full, data, sweep)}
        doc["scores"][label] = scores_document(bank, data, own)
    return doc, heads


FOLDS = 5
FIT_SCORES = "fit-oof"


def cross_fitted_scores(specs: Sequence[HeadSpec], data: SampleSet, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Each spec's score of every sample from a fit that never saw that sample's task (5 folds by task)."""
    import hashlib

    fold = np.asarray([int(hashlib.sha256(f"{seed}:{t}".encode()).hexdigest()[:8], 16) % FOLDS
                       for t in data.task_ids])
    out = {s.name: np.zeros(len(data)) for s in specs}
    for k in range(FOLDS):
        held = fold == k
        for spec in specs:
            out[spec.name][held] = fit_head(spec, data.where(~held), seed=seed).score(data.where(held))
    return out


def scores_document(bank: Bank, data: SampleSet, scores: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Each head's score of every sample of ``bank`` (``bank replay --scores``), tied to the bank's manifest."""
    from valueagent.bank.encode import manifest_sha256

    out: dict[str, dict[str, list[float]]] = {}
    for tid in dict.fromkeys(data.task_ids.tolist()):
        m = np.flatnonzero(data.task_ids == tid)
        m = m[np.argsort(data.index[m])]
        out[tid] = {name: [round(float(x), 6) for x in s[m]] for name, s in scores.items()}
    return {"bank": str(bank.root), "bank_sha256": manifest_sha256(bank.root), "heads": sorted(scores),
            "scores": out}


def export_axis(doc: Mapping[str, Any], heads: Mapping[str, Head], fit_bank: Bank, path: Any) -> dict[str, Any]:
    """Save the chosen single-layer linear head on the mean residual as an axis artifact (estimator
    ``supervised-probe``; its data hash is the fit bank's manifest sha256) and say what was saved."""
    from valueagent.bank.encode import features_manifest, manifest_sha256
    from valueagent.runtime.artifact import ValueAxis, save_axis

    name = next(c["name"] for c in doc["chosen"] if c["family"] == "probe" and c["source"] == "mean"
                and len(c["layers"]) == 1 and not c["extras"] and not c["fusion"])
    head = heads[name]
    direction = head.direction()
    feats = features_manifest(fit_bank.root)
    n_layers = int(load_features(fit_bank.root, fit_bank.tasks[0]["task_id"]).mean.shape[1]) - 1
    tests = {label: t["signals"][name] for label, t in doc["tests"].items()}
    axis = ValueAxis(direction=direction.astype(np.float32), layer=head.spec.layers[0],
                     model_id=fit_bank.manifest.model_id, hidden_size=len(direction), num_layers=n_layers,
                     estimator="supervised-probe", model_revision=fit_bank.manifest.revision,
                     data_hash="sha256:" + manifest_sha256(fit_bank.root),
                     validation={"head": head.spec.to_dict(), "tests": tests, "features": feats.get("dtype")},
                     notes=f"{name}: logistic regression on the layer's mean residual over generated tokens, fitted "
                           "on the model's own MBPP train+validation samples (valueagent bank heads)")
    save_axis(axis, path)
    return {"path": str(path), "head": name, "layer": head.spec.layers[0]}
