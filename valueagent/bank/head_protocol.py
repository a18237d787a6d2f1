"""The value-heads protocol: choose each head family on MBPP validation, refit on train + validation, judge
once on every test bank against log-prob, confidence, the value axis and random, paired by task.

Never fit on a task that is scored: the fit bank must hold only MBPP train/validation tasks and no test bank
may share a task with it (:func:`check_banks`). Heads themselves are :mod:`valueagent.bank.heads`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from valueagent.bank.encode import check_encoded, load_features
from valueagent.bank.heads import Head, HeadSpec, SampleSet, fit_head, load_samples, within_task_auroc
from valueagent.bank.store import Bank

__all__ = ["choose_heads", "export_axis", "judge", "run_heads"]

BASELINES = ("logprob", "confidence", "value", "entropy")
"""Fixed signals every head is judged beside (``valueagent.signals.FIXED``); ``random`` is added."""


def _random(data: SampleSet, seed: int) -> np.ndarray:
    from valueagent.signals import uniform_draw

    return np.asarray([uniform_draw(seed, str(t), int(i)) for t, i in zip(data.task_ids, data.index, strict=True)])


RANDOM_SEEDS = 20


def random_spread(data: SampleSet, seed: int) -> dict[str, float]:
    """The random control's mean within-task AUROC over ``RANDOM_SEEDS`` seeds (expected 0.5) and its spread:
    how far one realization of a signal that knows nothing lands from 0.5 on these tasks."""
    draws = [mean_within(_random(data, seed + k), data) for k in range(RANDOM_SEEDS)]
    return {"seeds": RANDOM_SEEDS, "mean": float(np.mean(draws)), "sd": float(np.std(draws, ddof=1)),
            "min": float(np.min(draws)), "max": float(np.max(draws))}


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


def centring(sweep: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Which works for the mean-residual probe on validation: features centred per task, or raw (best
    within-task AUROC of each over layers and C)."""
    out: dict[str, Any] = {}
    for key, centre in (("centred", True), ("raw", False)):
        rows = [r for r in sweep["probe-mean"] if r["centre"] is centre and np.isfinite(r["val_within"])]
        best = max(rows, key=lambda r: r["val_within"]) if rows else None
        out[key] = None if best is None else {"val_within": best["val_within"], "layer": best["layers"][0],
                                              "c": best["c"]}
    return out


def baseline_scores(data: SampleSet, seed: int) -> dict[str, np.ndarray]:
    return {**{b: np.asarray(data.fixed[b], dtype=np.float64) for b in BASELINES}, "random": _random(data, seed)}


def _top1(scores: np.ndarray, data: SampleSet) -> dict[str, bool]:
    """Best of the fresh samples by ``scores`` (the rank rule's choice, :func:`valueagent.search_rules.top`),
    untested: task -> passed."""
    from valueagent.search_rules import top

    out = {}
    for tid in dict.fromkeys(data.task_ids.tolist()):
        at = {int(data.index[k]): int(k) for k in np.flatnonzero((data.task_ids == tid) & (data.index > 0))}
        if at:
            out[tid] = bool(data.y[at[top({i: float(scores[k]) for i, k in at.items()})]])
    return out


def judge(scores: Mapping[str, np.ndarray], data: SampleSet, *, reference: str = "logprob",
          n_boot: int = 10_000) -> dict[str, Any]:
    """Per signal on one test set: within-task AUROC (mean over mixed tasks, bootstrap CI over tasks), pooled
    AUROC of fresh samples (CI), best of N untested; each against ``reference`` paired by task (bootstrap CI,
    exact sign-flip p / McNemar), Holm over the signals compared."""
    from valueagent.stats import auroc_bootstrap, holm, paired_bootstrap_diff, paired_outcomes, paired_sign_flip, wilson

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
            pc = paired_outcomes(top, ref_top, n_boot=n_boot)
            p_within[name] = paired_sign_flip(w, ref_w)
            p_top[name] = pc.p_value
            row["vs_reference"] = {
                "within_delta": dw.estimate, "within_ci": [dw.lo, dw.hi], "within_p": p_within[name],
                "best_of_n_delta": pc.delta.estimate, "best_of_n_ci": [pc.delta.lo, pc.delta.hi], "wins": pc.wins,
                "losses": pc.losses, "best_of_n_p": pc.p_value,
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
    on every test bank. Returns the result document and the final heads by name.

    The fits run on one BLAS thread: with more, the summation order (and so the last bits of every fit)
    depends on the machine's thread count, and near-ties in the validation sweep then choose other layers
    (two threads chose layer 24 for the committed 0.5B multi-layer head's 22)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _run_heads(fit_bank, tests, seed=seed, n_boot=n_boot, progress=progress)


def _run_heads(fit_bank: Bank, tests: Mapping[str, Bank], *, seed: int, n_boot: int,
               progress: Callable[[str], None] | None) -> tuple[dict[str, Any], dict[str, Head]]:
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
        "chosen": [s.to_dict() for s in chosen], "sweep": sweep, "centring": centring(sweep),
        "validation_baselines": {b: mean_within(s, val) for b, s in baseline_scores(val, seed).items()},
        "tests": {}, "scores": {FIT_SCORES: {**scores_document(fit_bank, full, oof), "cross_fitted_folds": FOLDS}},
    }
    for label, bank in tests.items():
        data = load_samples(bank)
        say(f"test {label}: {len(data)} samples of {len(bank)} tasks")
        own = {name: h.score(data) for name, h in heads.items()}
        doc["tests"][label] = {"bank": str(bank.root), **judge({**baseline_scores(data, seed), **own}, data,
                                                               n_boot=n_boot),
                               "random_control_spread": random_spread(data, seed),
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
    ``supervised-probe``, read ``linear``: a live reading's mean over a completion is the head's score; its data
    hash is the fit bank's manifest sha256) and say what was saved."""
    from valueagent.bank.encode import features_manifest, manifest_sha256
    from valueagent.runtime.artifact import ValueAxis, save_axis

    name = next(c["name"] for c in doc["chosen"] if c["family"] == "probe" and c["source"] == "mean"
                and len(c["layers"]) == 1 and not c["extras"] and not c["fusion"])
    head = heads[name]
    direction = head.direction()
    feats = features_manifest(fit_bank.root)
    n_layers = int(load_features(fit_bank.root, fit_bank.tasks[0]["task_id"]).mean.shape[1]) - 1
    if head.spec.layers[0] >= n_layers:  # hidden_states[L] of the last layer has the final norm applied
        return {"path": None, "head": name, "layer": head.spec.layers[0],
                "skipped": f"layer {n_layers} is the final, normed hidden state, and a live reading hooks the "
                           "residual before the final norm: a head fitted there would be read on other numbers; "
                           "no axis written (a head of an earlier layer exports)"}
    tests = {label: t["signals"][name] for label, t in doc["tests"].items()}
    # read live as h . direction + bias per token, whose mean over a completion is the head's score of its mean
    # residual (a head centred per task: the same up to the task's constant, so the same order within a task)
    bias = float(head.model.intercept - head.mean @ (head.model.coef / head.scale))
    axis = ValueAxis(direction=direction.astype(np.float32), layer=head.spec.layers[0], reading="linear", bias=bias,
                     model_id=fit_bank.manifest.model_id, hidden_size=len(direction), num_layers=n_layers,
                     estimator="supervised-probe", model_revision=fit_bank.manifest.revision,
                     data_hash="sha256:" + manifest_sha256(fit_bank.root),
                     validation={"head": head.spec.to_dict(), "tests": tests, "features": feats.get("dtype")},
                     notes=f"{name}: logistic regression on the layer's mean residual over generated tokens, fitted "
                           "on the model's own MBPP train+validation samples (valueagent bank heads)")
    save_axis(axis, path)
    return {"path": str(path), "head": name, "layer": head.spec.layers[0]}
