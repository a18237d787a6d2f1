"""Replay a bank: fit the fitted signals and the thresholds on calibration tasks, then score every
whole-answer policy on the eval tasks, paired, with intervals. Never writes to the bank."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from valueagent.bank import policies as P
from valueagent.bank.store import Bank, BankError
from valueagent.signals import (
    FITTED,
    FIXED,
    Logistic,
    SignalError,
    SignalFn,
    fit_signals,
    running_window,
    signal_names,
    uniform_draw,
)
from valueagent.stats import (
    auroc,
    auroc_bootstrap,
    conformal_threshold,
    paired_bootstrap_diff,
    paired_outcomes,
    wilson,
)

RANK_SIGNALS = ("value", "logprob", "confidence", "probe", "value+logprob", "entropy", "confidence-tail",
                "value-lowest", "random", "order")
"""The built-in signals that rank, in table order; signals registered by plugins follow (:func:`rank_signals`)."""
SEQ_SIGNALS = ("value", "logprob", "confidence", "probe", "random")
STOP_SIGNALS = ("value", "confidence")
_NEVER = 1e9  # the lowest window of a sample too short to have one (it cannot be stopped)
RISK = 0.05
"""Conformal risk of each calibrated rule: P(accepted untested and failing), P(discarded or stopped and
passing), each <= 5% on an exchangeable new sample."""


@dataclass(frozen=True, kw_only=True)
class ReplayConfig:
    seed: int = 0  # the random control's seed
    risk: float = RISK
    calibration: tuple[str, ...] | None = None  # task ids; default: HumanEval's frozen split
    calibration_bank: Bank | None = None  # another bank of the same model whose tasks all calibrate (MBPP train)
    policies: tuple[str, ...] | None = None  # default: all
    scored: Mapping[str, Mapping[str, Sequence[float]]] = field(default_factory=dict)
    """Signals scored outside the replay (value heads, ``bank heads``): task id -> signal -> one score per
    sample. They rank (``<name>-rank``, ``-top1``) beside the fixed signals, paired with the same controls."""
    scored_only: bool = False  # replay only the tasks ``scored`` covers (an interim answer on a bank being encoded)


def split_ids(bank: Bank, calibration: Sequence[str] | None) -> tuple[set[str], set[str]]:
    ids = [t["task_id"] for t in bank]
    if calibration is None:
        from valueagent.tasks import humaneval_split

        calib = {t.task_id for t in humaneval_split("calibration")} & set(ids)  # none: replay what needs no fit
    else:
        calib = set(calibration)
        if unknown := calib - set(ids):
            raise BankError(f"--calibration-ids {sorted(unknown)[:3]} are not in the bank {bank.root}")
    evaluation = set(ids) - calib
    if not evaluation:
        raise BankError(f"{bank.root} has no task outside the calibration split to evaluate on: build more tasks")
    return calib, evaluation


def _with_scored(views: Sequence[P.TaskView], scored: Mapping[str, Mapping[str, Sequence[float]]],
                 names: set[str]) -> list[P.TaskView]:
    """Calibration views with the externally scored signals they have scores for (``bank heads`` writes
    out-of-fold scores of its fit bank, so a head's sequential thresholds never trust its own fit)."""
    from dataclasses import replace

    out = []
    for v in views:
        extra = {k: np.asarray(x, dtype=np.float64) for k, x in (scored.get(v.task_id) or {}).items()
                 if k in names and len(x) == v.n + 1}
        out.append(replace(v, scores={**v.scores, **extra}) if extra else v)
    return out


def _other_bank_calibrates(bank: Bank, other: Bank) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every task of ``other`` calibrates, every task of ``bank`` is evaluated: same model, disjoint tasks."""
    a, b = bank.manifest, other.manifest
    if (a.model_id, a.revision, a.quantization) != (b.model_id, b.revision, b.quantization):
        raise BankError(f"--calibration-bank {other.root} was sampled from {b.model_id} ({b.quantization}), the "
                        f"bank from {a.model_id} ({a.quantization}): calibrate on a bank of the same model")
    if overlap := {t["task_id"] for t in bank} & {t["task_id"] for t in other}:
        raise BankError(f"--calibration-bank {other.root} shares {len(overlap)} tasks with {bank.root} (e.g. "
                        f"{sorted(overlap)[0]}): calibrate on tasks that are never evaluated")
    return list(other.tasks), list(bank.tasks)


def _view(task: Mapping[str, Any], fns: Mapping[str, SignalFn], seed: int,
          scored: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> P.TaskView:
    samples = tuple(task["samples"])
    n_vis = int(task["visible_total"])
    scores = {name: np.asarray([fn(s) for s in samples], dtype=np.float64) for name, fn in fns.items()}
    for name, values in ((scored or {}).get(task["task_id"]) or {}).items():
        scores[name] = np.asarray(values, dtype=np.float64)
    scores["random"] = np.asarray([uniform_draw(seed, task["task_id"], i) for i in range(len(samples))])
    scores["order"] = -np.arange(len(samples), dtype=np.float64)
    return P.TaskView(
        task_id=task["task_id"],
        tokens=np.asarray([len(s["token_ids"]) for s in samples]),
        visible_ok=np.asarray([n_vis == 0 or all(s["visible"]) for s in samples]),
        visible_frac=np.asarray([sum(s["visible"]) / n_vis if n_vis else 1.0 for s in samples]),
        has_tests=n_vis > 0,
        hidden=np.asarray([bool(s["hidden_passed"]) for s in samples]),
        scores=scores,
        samples=samples,
    )


FOLDS = 5


def cross_fitted_views(tasks: Sequence[Mapping[str, Any]], fns: Mapping[str, SignalFn],
                       fitted: Mapping[str, Logistic], seed: int) -> list[P.TaskView]:
    """Calibration views whose fitted-signal scores come from models that never saw that task (5 folds by
    task): thresholds set on in-sample scores of a probe would trust its overfit and accept everything."""
    views = []
    for k in range(FOLDS):
        held = [t for i, t in enumerate(tasks) if i % FOLDS == k]
        if not held:
            continue
        rest = [s for i, t in enumerate(tasks) if i % FOLDS != k for s in t["samples"][1:]]
        try:
            fold = fit_signals(rest)
            fold_fns = {**fns, **{name: fold[name].signal() for name in fitted}}
        except SignalError:  # a fold with one outcome only: fall back to the full fit for its tasks, said so
            fold_fns = dict(fns)
        views += [_view(t, fold_fns, seed) for t in held]
    order = {t["task_id"]: i for i, t in enumerate(tasks)}
    return sorted(views, key=lambda v: order[v.task_id])


@dataclass
class Calibrated:
    """Everything fitted on calibration tasks: the fitted signals and every rule's threshold."""

    seq: dict[str, P.SeqThresholds] = field(default_factory=dict)
    stop: dict[str, float] = field(default_factory=dict)
    stop_rate: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    signals: set[str] = field(default_factory=set)
    fitted: dict[str, Logistic] = field(default_factory=dict)
    risk: float = RISK
    task_ids: tuple[str, ...] = ()
    scored: set[str] = field(default_factory=set)  # names of the externally scored signals (rank and top-1 only)


def calibrate(views: Sequence[P.TaskView], risk: float, extra_seq: Sequence[str] = ()) -> Calibrated:
    """Every rule's threshold on calibration views. ``extra_seq``: externally scored signals that also get a
    sequential gate, when every calibration view has their (out-of-fold) scores."""
    fresh = [(v, i) for v in views for i in range(1, v.n + 1)]
    known = set.intersection(*(set(v.scores) for v in views)) if views else set()
    passed = np.asarray([bool(v.hidden[i]) for v, i in fresh])
    cal = Calibrated(signals=known)
    for sig in [x for x in (*SEQ_SIGNALS, *extra_seq) if x in known]:
        s = np.asarray([v.scores[sig][i] for v, i in fresh])
        hi = conformal_threshold(s, passed, risk, target="joint")
        lo = conformal_threshold(-s, ~passed, risk, target="joint")
        th = P.SeqThresholds(float(hi.threshold) if hi else float("inf"),
                             -float(lo.threshold) if lo else float("-inf"))
        cal.seq[sig] = th
        cal.record[f"{sig}-seq"] = {"accept": th.accept, "discard": th.discard, "risk": risk,
                                    "accept_rate": float((s >= th.accept).mean()),
                                    "discard_rate": float((s <= th.discard).mean())}
    for sig in STOP_SIGNALS:
        trace = P.STOP_TRACES[sig]
        lows = []
        for v, i in fresh:
            rw = running_window(trace(v.samples[i]))
            lows.append(float(rw.min()) if len(rw) else _NEVER)  # shorter than a window: never stopped
        low = np.asarray(lows)
        stop_th = conformal_threshold(-low, ~passed, risk, target="joint")
        thr = -float(stop_th.threshold) if stop_th and stop_th.threshold > -_NEVER else float("-inf")
        cal.stop[sig] = thr
        cal.stop_rate[sig] = float((low <= thr).mean())
        cal.record[f"{sig}-stop"] = {"threshold": thr, "risk": risk, "stop_rate": cal.stop_rate[sig]}
    return cal


Policy = Callable[[P.TaskView], P.Outcome]


def policy_table(cal: Calibrated, seed: int) -> dict[str, Policy]:
    """Every replayable policy by name (the live names where a live policy exists)."""
    table: dict[str, Policy] = {"single": P.single, "always-test": P.always_test, "oracle": P.oracle}
    for sig in [x for x in rank_signals() if x in cal.signals] + sorted(cal.scored):
        table[f"{sig}-rank"] = partial(P.rank_then_test, signal=sig)
        table[f"{sig}-top1"] = partial(P.top1, signal=sig)
    for sig in cal.seq:
        table[f"{sig}-seq"] = partial(P.sequential, signal=sig, th=cal.seq[sig])
    for sig in cal.stop:
        table[f"{sig}-stop"] = partial(P.early_stop, stop=P.window_stop(P.STOP_TRACES[sig], cal.stop[sig]))
    # The control stops as often as value-stop did on calibration, at random tokens.
    if "value" in cal.stop_rate:
        table["random-stop"] = partial(P.early_stop, stop=P.random_stop(cal.stop_rate["value"], seed))
    table["order-test"] = partial(P.early_stop, stop=P.no_stop)  # fresh samples tested in order
    return table


FRONTIER = ("value", "logprob", "confidence", "probe", "value+logprob", "random")
"""The built-in signals whose cost-varied policies make the frontier; externally scored ones (heads) follow."""


def frontier_table(n: int, signals: set[str], scored: Sequence[str] = ()) -> dict[str, Policy]:
    """Cost-varied policies for the frontier: k candidates (tokens) and at most m test runs."""
    out: dict[str, Policy] = {}
    for sig in [x for x in FRONTIER if x in signals] + sorted(scored):
        for k in range(1, n + 1):
            out[f"{sig}-rank|k={k}"] = partial(P.rank_then_test, signal=sig, k=k)
            out[f"{sig}-top1|k={k}"] = partial(P.top1, signal=sig, k=k)
        for m in range(0, n + 1):
            out[f"{sig}-rank|tests<={m}"] = partial(P.rank_then_test, signal=sig, k=n, max_tests=m)
    for k in range(1, n + 1):
        out[f"oracle|k={k}"] = partial(P.oracle, k=k)
    for m in range(1, n + 2):
        out[f"always-test|tests<={m}"] = partial(P.always_test, test_runs=m)
    return out


def _summ(outs: Sequence[P.Outcome]) -> dict[str, Any]:
    k = sum(o.passed for o in outs)
    est = wilson(k, len(outs))
    return {"n": len(outs), "passed": k, "pass_at_1": est.estimate, "ci": [est.lo, est.hi],
            "tokens": float(np.mean([o.tokens for o in outs])), "test_runs": float(np.mean([o.tests for o in outs]))}


CONTROLS = ("random", "order", "logprob", "confidence")


def _paired(name: str, results: Mapping[str, Sequence[P.Outcome]]) -> dict[str, Any]:
    """``name`` against the same action driven by each control signal, and against single / always-test."""
    sig, _, action = name.rpartition("-")
    rivals = [f"{c}-{action}" for c in CONTROLS if f"{c}-{action}" in results and f"{c}-{action}" != name]
    rivals += [r for r in ("always-test", "single") if r != name and r in results]
    a = np.asarray([o.passed for o in results[name]])
    out = {}
    for r in rivals:
        pc = paired_outcomes(a, np.asarray([o.passed for o in results[r]]))
        tok = paired_bootstrap_diff(np.asarray([o.tokens for o in results[name]], float),
                                    np.asarray([o.tokens for o in results[r]], float))
        out[r] = {"delta": pc.delta.estimate, "ci": [pc.delta.lo, pc.delta.hi], "wins": pc.wins,
                  "losses": pc.losses, "p": pc.p_value, "tokens_delta": tok.estimate, "tokens_ci": [tok.lo, tok.hi]}
    return out


def signal_quality(views: Sequence[P.TaskView], signals: Sequence[str]) -> dict[str, Any]:
    """Per signal: pooled AUROC for a fresh sample's hidden pass (bootstrap CI), the mean within-task AUROC
    over tasks whose samples disagree, and the top-1 pass rate among N."""
    fresh = [(v, i) for v in views for i in range(1, v.n + 1)]
    y = np.asarray([bool(v.hidden[i]) for v, i in fresh])
    mixed = [v for v in views if 0 < v.hidden[1:].sum() < v.n]
    out = {}
    for sig in signals:
        s = np.asarray([v.scores[sig][i] for v, i in fresh])
        pooled = auroc_bootstrap(s, y, n_boot=1000) if 0 < y.sum() < len(y) else None
        within = [auroc(v.scores[sig][1:], v.hidden[1:]) for v in mixed]
        top = [P.top1(v, sig) for v in views]
        out[sig] = {
            "auroc": None if pooled is None else pooled.estimate,
            "auroc_ci": None if pooled is None else [pooled.lo, pooled.hi],
            "within_task_auroc": float(np.mean(within)) if within else None,
            "mixed_tasks": len(mixed),
            "top1": _summ(top),
        }
    return out


def _check_scored(scored: Mapping[str, Mapping[str, Sequence[float]]], tasks: Sequence[Mapping[str, Any]]) -> set[str]:
    """The names of the externally scored signals; an error naming the fix when they do not cover every
    evaluated sample, or shadow a built-in signal."""
    if not scored:
        return set()
    names = {n for per in scored.values() for n in per}
    if clash := names & set(signal_names()):
        raise BankError(f"scored signals {sorted(clash)} shadow built-in ones: rename them")
    for t in tasks:
        per = scored.get(t["task_id"])
        if per is None or set(per) != names or any(len(v) != len(t["samples"]) for v in per.values()):
            raise BankError(f"the scores do not cover every sample of {t['task_id']} for {sorted(names)}: score "
                            "this very bank (`valueagent bank heads ... --test LABEL=BANK`)")
    return names


def rank_signals() -> tuple[str, ...]:
    """Every registered signal a replay ranks by: the built-in ones, then those plugins registered."""
    return (*RANK_SIGNALS, *(s for s in signal_names() if s not in RANK_SIGNALS))


def policy_names() -> tuple[str, ...]:
    """Every policy a replay can score (those of a fitted signal only when its fit succeeds)."""
    return ("single", "always-test", "oracle", *(f"{s}-{a}" for s in rank_signals() for a in ("rank", "top1")),
            *(f"{s}-seq" for s in SEQ_SIGNALS), *(f"{s}-stop" for s in STOP_SIGNALS), "random-stop", "order-test")


def check_policies(names: Sequence[str], scored: Sequence[str] = ()) -> None:
    known = (*policy_names(), *(f"{s}-{a}" for s in scored for a in ("rank", "top1")))
    if unknown := [p for p in names if p not in known]:
        raise BankError(f"unknown replay policy {unknown}: choose from {', '.join(known)}")


def replay(bank: Bank, config: ReplayConfig = ReplayConfig()) -> dict[str, Any]:
    """Score every policy on the bank's eval tasks with signals and thresholds fitted on its calibration tasks.
    The result's ``gate_config`` is the document live search policies run with (``--gate-config``)."""
    start = time.perf_counter()
    if config.policies is not None:
        check_policies(config.policies, sorted({n for per in config.scored.values() for n in per}))
    if config.calibration_bank is not None:
        calib_tasks, eval_tasks = _other_bank_calibrates(bank, config.calibration_bank)
        calib_ids = {t["task_id"] for t in calib_tasks}
    else:
        calib_ids, eval_ids = split_ids(bank, config.calibration)
        calib_tasks = [t for t in bank if t["task_id"] in calib_ids]
        eval_tasks = [t for t in bank if t["task_id"] in eval_ids]
    if config.scored_only:
        eval_tasks = [t for t in eval_tasks if t["task_id"] in config.scored]
        calib_tasks = [t for t in calib_tasks if t["task_id"] in config.scored]
        calib_ids = {t["task_id"] for t in calib_tasks}
    try:
        fitted = fit_signals([s for t in calib_tasks for s in t["samples"][1:]])
        unfitted = None
    except SignalError as exc:  # reported in the result; every policy of a fitted signal is left out
        fitted, unfitted = {}, str(exc)
    fns: dict[str, SignalFn] = {**FIXED, **{name: model.signal() for name, model in fitted.items()}}
    cal_views = cross_fitted_views(calib_tasks, fns, fitted, config.seed) if fitted else \
        [_view(t, fns, config.seed) for t in calib_tasks]
    scored = _check_scored(config.scored, eval_tasks)
    cal_views = _with_scored(cal_views, config.scored, scored)
    views = [_view(t, fns, config.seed, config.scored) for t in eval_tasks]
    n = bank.manifest.samples
    if cal_views:
        cal = calibrate(cal_views, config.risk, extra_seq=sorted(scored))
    else:  # no calibration task: every policy that needs no fitting, and what was left out says so
        cal = Calibrated(signals=set(views[0].scores) if views else set())
        unfitted = ("no calibration tasks in this bank (none of HumanEval's calibration split): the fitted signals "
                    f"({', '.join(FITTED)}) and every -seq / -stop threshold need them; pass --calibration-ids "
                    "or --calibration-bank BANK (MBPP: a train+validation bank of the same model)")
        cal.record["skipped"] = {"policies": sorted({*(f"{s}-seq" for s in SEQ_SIGNALS),
                                                     *(f"{s}-stop" for s in STOP_SIGNALS), "random-stop",
                                                     *(f"{s}-{a}" for s in FITTED for a in ("rank", "top1"))}),
                                 "reason": unfitted}
    cal.scored = scored
    if unfitted is not None:
        cal.record["unfitted"] = {"signals": list(FITTED), "reason": unfitted}
    cal.fitted, cal.risk, cal.task_ids = fitted, config.risk, tuple(sorted(calib_ids))
    table = policy_table(cal, config.seed)
    if config.policies is not None:
        if unknown := [p for p in config.policies if p not in table]:
            raise BankError(f"replay policy {unknown} needs a fitted signal that could not be fitted here: "
                            f"{cal.record.get('unfitted', {}).get('reason', '')}")
        table = {p: table[p] for p in config.policies}
    results = {name: [fn(v) for v in views] for name, fn in table.items()}
    frontier = {name: _summ([fn(v) for v in views])
                for name, fn in frontier_table(n, cal.signals, sorted(scored)).items()}
    out: dict[str, Any] = {
        "bank": str(bank.root),
        "manifest": bank.manifest.to_dict(),
        "split": {"calibration": len(calib_tasks), "eval": len(eval_tasks),
                  **({"scored_only": True, "eval_in_bank": len(bank)} if config.scored_only else {})},
        "calibration": cal.record,
        "signals": signal_quality(views, [s for s in rank_signals() if s in cal.signals] + sorted(scored)),
        "policies": {name: _summ(outs) for name, outs in results.items()},
        "paired": {name: _paired(name, results) for name in results if name not in ("oracle",)},
        "frontier": frontier,
        "per_task": {name: [[v.task_id, o.passed, o.tokens, o.tests] for v, o in zip(views, outs, strict=True)]
                     for name, outs in results.items()},
    }
    out["answers"] = headline_answers(out)
    out["gate_config"] = gate_document(out, cal)
    out["replay_s"] = round(float(time.perf_counter() - start), 2)
    return out


def headline_answers(out: Mapping[str, Any]) -> dict[str, Any]:
    """The three questions: which signal orders candidates best; how many test runs each ranking needs to
    reach always-test's pass rate; the best pass@1 at equal tokens (always-test's mean tokens)."""
    sig = out["signals"]
    ranked = sorted(((s, q["within_task_auroc"] or 0.0, q["top1"]["pass_at_1"]) for s, q in sig.items()),
                    key=lambda x: -x[1])
    target = out["policies"]["always-test"]["pass_at_1"] if "always-test" in out["policies"] else None
    runs_needed = {}
    fr = out["frontier"]
    heads = sorted({k.split("-rank|tests<=")[0] for k in fr if "-rank|tests<=" in k} - set(FRONTIER))
    for s in [*FRONTIER, *heads]:
        pts = sorted((int(k.split("<=")[1]), v) for k, v in fr.items() if k.startswith(f"{s}-rank|tests<="))
        hit = next((v for _m, v in pts if target is not None and v["pass_at_1"] >= target), None)
        runs_needed[s] = None if hit is None else {"test_runs": hit["test_runs"], "pass_at_1": hit["pass_at_1"]}
    budget = out["policies"].get("always-test", {}).get("tokens")
    everything = {k: v for k, v in {**out["policies"], **fr}.items() if not k.startswith("oracle")}

    def best_within(tokens: float) -> dict[str, Any] | None:
        within = [(k, v) for k, v in everything.items() if v["tokens"] <= tokens * 1.0001]
        if not within:
            return None
        k, v = max(within, key=lambda kv: (kv[1]["pass_at_1"], -kv[1]["tokens"]))
        return {"policy": k, "budget": tokens, **{x: v[x] for x in ("pass_at_1", "ci", "tokens", "test_runs")}}

    budgets = {f"{m}x always-test": budget * m for m in (1, 2, 4)} if budget is not None else {}
    return {"signal_order": [{"signal": s, "within_task_auroc": a, "top1": t} for s, a, t in ranked],
            "always_test_pass_at_1": target, "test_runs_to_match_always_test": runs_needed,
            "best_at_always_test_tokens": best_within(budget) if budget is not None else None,
            "best_at_token_budgets": {name: best_within(b) for name, b in budgets.items()},
            "always_test_tokens": budget}


def gate_document(result: Mapping[str, Any], cal: Calibrated) -> dict[str, Any]:
    """A gate-calibration document for the live search policies (``--gate-config``): each policy's thresholds
    and fitted signals under ``search``, tied to the bank's reading (model and axis)."""
    from datetime import UTC, datetime

    from valueagent.agent.calibrate import FORMAT, reading_of
    from valueagent.agent.gate import GateConfig

    fitted = {name: model.to_dict() for name, model in cal.fitted.items()}
    n = int(result["manifest"]["samples"])
    policies: dict[str, Any] = {}
    for sig in ("value", "logprob", "confidence", "probe", "value+logprob", "random", "order"):
        extra: dict[str, Any] = {"samples": n, **({"fitted": {sig: fitted[sig]}} if sig in fitted else {})}
        policies[f"{sig}-rank"] = GateConfig(signal="none", tests="never", calibrated=True, search=extra).to_dict()
    for sig, th in cal.seq.items():
        extra = {"samples": n, **({"fitted": {sig: fitted[sig]}} if sig in fitted else {})}
        policies[f"{sig}-seq"] = GateConfig(signal="none", tests="never", calibrated=True, search={
            "accept": _finite(th.accept), "discard": _finite(th.discard), **extra}).to_dict()
    for sig, thr in cal.stop.items():
        policies[f"{sig}-stop"] = GateConfig(signal="none", tests="never", calibrated=True,
                                             search={"threshold": _finite(thr), "samples": n}).to_dict()
    m = result["manifest"]
    return {"format": FORMAT, "created": datetime.now(UTC).isoformat(timespec="seconds"), "risk": cal.risk,
            "source": f"valueagent bank replay {result['bank']}", "task_ids": sorted(cal.task_ids),
            "reading": reading_of(m), "policies": policies}


def _finite(x: float) -> float | None:
    """A threshold for JSON: None where no threshold met the risk (the rule never fires)."""
    return float(x) if np.isfinite(x) else None
