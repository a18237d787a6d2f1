"""Gate thresholds calibrated on tasks disjoint from those evaluated, saved as JSON with their config.

Input: per-task readings of greedy first drafts with their hidden-test verdicts — the ``results.jsonl``
of a ``single`` run over a calibration split (``final_values``, ``final_logprobs``, ``passed``). The
samples are split by a hash of the task id: one part fits the position baseline of the value and the
logistic ``value+logprob`` model, the other sets the thresholds, so the split-conformal guarantee holds:

- ``accept_above``: :func:`valueagent.stats.conformal_threshold` on the trajectory score — at most
  ``risk`` of tests-skipped acceptances wrong (finite-sample corrected ``(f + 1) / (m + 1)``); ``None``
  (always test) when no threshold achieves it;
- ``backtrack_below`` / ``drop_below``: the ``backtrack_rate`` quantile, over *passing* drafts, of the
  lowest segment score / the largest drop, so at most that share of good drafts gets interrupted;
- ``rates`` (for ``random-gate``): the value gate's own per-reading backtrack rate and acceptance rate.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from valueagent.agent.gate import GateConfig, Signal, scorer, signals_of
from valueagent.stats import auroc, conformal_threshold, logistic_regression

FORMAT = "valueagent.gate-calibration/1"
def gated_policies() -> dict[str, Signal]:
    """The policies whose thresholds a calibration fits, with their signal: every registered segment gate on a
    read signal (not the random control, whose rates come from the value gate; not the branching variants,
    which borrow another's thresholds)."""
    from valueagent.agent.policies import POLICIES, policy_names

    return {name: POLICIES[name].signal for name in policy_names() if POLICIES[name].segmented
            and POLICIES[name].tests == "gate" and not POLICIES[name].branch and POLICIES[name].calibration is None
            and POLICIES[name].signal not in ("random", "none")}


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One calibration draft: per-token readings and whether it passed the hidden tests."""

    task_id: str
    passed: bool
    values: list[float]
    logprobs: list[float]


def samples_from_records(records: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """Samples from runner records (any policy; the final draft's readings are used)."""
    return [
        Sample(task_id=str(r["task_id"]), passed=bool(r["passed"]), values=list(r.get("final_values", [])),
               logprobs=list(r.get("final_logprobs", [])))
        for r in records
        if r.get("error") is None and (r.get("final_values") or r.get("final_logprobs"))
    ]


def split_samples(samples: Sequence[Sample], fit_fraction: float = 0.5) -> tuple[list[Sample], list[Sample]]:
    """(fit, threshold) parts by ``sha256(task_id)``; with fewer than 10 samples both are everything."""
    if len(samples) < 10:
        return list(samples), list(samples)
    ranked = sorted(samples, key=lambda s: hashlib.sha256(s.task_id.encode()).hexdigest())
    k = max(1, min(len(ranked) - 1, round(len(ranked) * fit_fraction)))
    return ranked[:k], ranked[k:]


def fit_position_baseline(samples: Sequence[Sample]) -> tuple[tuple[float, float], float]:
    """Least squares ``v ≈ a + b * log1p(pos)`` over every token; returns ``((a, b), residual std)``."""
    pos = np.array([i for s in samples for i in range(len(s.values))], dtype=float)
    val = np.array([v for s in samples for v in s.values], dtype=float)
    if len(val) < 3:
        return (0.0, 0.0), 1.0
    design = np.stack([np.ones_like(pos), np.log1p(pos)], axis=1)  # (N, 2)
    coef, *_ = np.linalg.lstsq(design, val, rcond=None)
    resid = val - design @ coef
    scale = float(resid.std()) or 1.0
    return (float(coef[0]), float(coef[1])), scale


def segment_scores(sample: Sample, config: GateConfig, segment_tokens: int) -> list[float]:
    """Scores of consecutive ``segment_tokens`` chunks of a draft (chunks under ``min_tokens`` skipped)."""
    score = scorer(config)
    n = max(len(sample.values), len(sample.logprobs))
    out = []
    for start in range(0, n, segment_tokens):
        end = start + segment_tokens
        sig = signals_of(sample.values[start:end], sample.logprobs[start:end], start, config)
        s = score(sig)
        if s is not None and sig.n_tokens >= config.min_tokens:
            out.append(s)
    return out


def trajectory_score(sample: Sample, config: GateConfig) -> float | None:
    return scorer(config)(signals_of(sample.values, sample.logprobs, 0, config))


def _first_flag(scores: Sequence[float], below: float | None, drop: float | None) -> int | None:
    for i, s in enumerate(scores):
        if (below is not None and s < below) or (drop is not None and i and s - max(scores[:i]) < drop):
            return i
    return None


def _quantile(xs: Sequence[float], q: float) -> float | None:
    return float(np.quantile(np.asarray(xs), q, method="lower")) if xs else None


def fit_gate(
    config: GateConfig, part: Sequence[Sample], *, risk: float, backtrack_rate: float, segment_tokens: int
) -> tuple[GateConfig, dict[str, Any]]:
    """Thresholds for one signal on the threshold part; returns the config and a report of its rates."""
    scored = [(s, t) for s in part if (t := trajectory_score(s, config)) is not None]
    if not scored:
        return config.with_(notes="no readings for this signal: uncalibrated"), {"n": 0}
    labels = [s.passed for s, _ in scored]
    traj = [t for _, t in scored]
    conf = conformal_threshold(traj, labels, risk)
    segs = [segment_scores(s, config, segment_tokens) for s, _ in scored]
    good = [g for g, ok in zip(segs, labels, strict=True) if ok and g]
    below = _quantile([min(g) for g in good], backtrack_rate)
    drops = [min(g[i] - max(g[:i]) for i in range(1, len(g))) for g in good if len(g) > 1]
    drop = _quantile(drops, backtrack_rate)
    flags = [_first_flag(g, below, drop) for g in segs]
    readings = sum(len(g) if f is None else f + 1 for g, f in zip(segs, flags, strict=True))
    accepted = [t >= conf.threshold for t in traj] if conf is not None else [False] * len(traj)
    fitted = config.with_(
        accept_above=conf.threshold if conf is not None else None, backtrack_below=below, drop_below=drop,
        calibrated=True,
        rates={"backtrack": sum(f is not None for f in flags) / max(readings, 1),
               "accept": sum(accepted) / len(accepted)},
    )
    n_pass = sum(labels)
    report = {
        "n": len(scored), "n_passed": n_pass,
        "auroc_trajectory": auroc(traj, labels) if 0 < n_pass < len(labels) else None,
        "accept": None if conf is None else {
            "threshold": conf.threshold, "n_accepted": conf.n_accepted,
            "n_failures_accepted": conf.n_failures_accepted, "bound": conf.bound,
        },
        "flag_rate_passed": _rate([f is not None for f, ok in zip(flags, labels, strict=True) if ok]),
        "flag_rate_failed": _rate([f is not None for f, ok in zip(flags, labels, strict=True) if not ok]),
    }
    return fitted, report


def _rate(xs: Sequence[bool]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def calibrate(
    samples: Sequence[Sample],
    *,
    risk: float = 0.1,
    backtrack_rate: float = 0.1,
    segment_tokens: int = 32,
    fit_fraction: float = 0.5,
    seed: int = 0,
    source: Mapping[str, Any] | None = None,
    reading: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit every gated policy's config; returns the JSON document :func:`save_calibration` writes.
    ``reading`` (:func:`reading_of_records`) records the model and axis the drafts were read with."""
    fit_part, thr_part = split_samples(samples, fit_fraction)
    (a, b), s = fit_position_baseline(fit_part)
    base = GateConfig(value_baseline=(a, b), value_scale=s, seed=seed)
    value_cfg = base.with_(signal="value")
    feats = [(signals_of(x.values, x.logprobs, 0, value_cfg), x.passed) for x in fit_part]
    feats = [(f, ok) for f, ok in feats if f.value_norm is not None and f.logprob is not None]
    weights = (0.0, 1.0, 1.0)
    if feats and 0 < sum(ok for _, ok in feats) < len(feats):
        xy = np.array([[f.value_norm, f.logprob] for f, _ in feats], dtype=float)
        w, b = logistic_regression(xy, np.array([ok for _, ok in feats], dtype=float), l2=1.0, standardize=True)
        weights = (b, float(w[0]), float(w[1]))
    policies: dict[str, Any] = {}
    report: dict[str, Any] = {}
    for name, signal in gated_policies().items():
        cfg = base.with_(signal=signal, tests="gate", weights=weights)
        fitted, rep = fit_gate(cfg, thr_part, risk=risk, backtrack_rate=backtrack_rate,
                               segment_tokens=segment_tokens)
        policies[name], report[name] = fitted.to_dict(), rep
    rand = GateConfig.from_dict(policies["value"]).with_(signal="random", notes="rates of the value gate")
    policies["random-gate"] = rand.to_dict()
    return {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "risk": risk, "backtrack_rate": backtrack_rate, "segment_tokens": segment_tokens,
        "n_fit": len(fit_part), "n_threshold": len(thr_part),
        "split": "sha256(task_id)" if len(samples) >= 10 else "none (< 10 samples: not split-conformal)",
        "position_baseline": {"a": a, "b": b, "scale": s},
        "logistic_weights": list(weights),
        "task_ids": sorted(x.task_id for x in samples),
        "source": dict(source or {}),
        "reading": dict(reading) if reading else None,
        "policies": policies,
        "report": report,
    }


def save_calibration(document: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return float(x) if isinstance(x, np.floating) else str(x)


READING_KEYS = ("model_id", "axis_layer", "axis_sha256")


def reading_of(model: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a gate's thresholds are measured in: the model and the axis its readings came from
    (``model`` is a :class:`~valueagent.runtime.generation.ModelInfo` as a dict, or a record's ``meta.model``)."""
    if not model:
        return None
    return {k: model.get(k) for k in ("model_id", "revision", "axis", "axis_layer", "axis_sha256")}


def reading_of_records(records: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The one reading of a set of runner records; a ValueError if they mix models or axes."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        reading = reading_of((r.get("meta") or {}).get("model"))
        if reading is not None:
            seen.setdefault(tuple(reading[k] for k in READING_KEYS), reading)
    if len(seen) > 1:
        kinds = "; ".join(f"{m} (axis layer {layer}, sha256 {str(h)[:12]})" for m, layer, h in seen)
        raise ValueError(f"these results come from different models or axes ({kinds}): calibrate each "
                         "reading on its own results")
    return next(iter(seen.values()), None)


def check_gate_reading(document: Mapping[str, Any], model: Mapping[str, Any], path: str | Path) -> None:
    """Refuse thresholds calibrated on another model's or axis's reading: value thresholds are in the units
    of one axis on one model. Files without a recorded reading (older ones) are not checked."""
    cal, now = document.get("reading"), reading_of(model)
    if not cal or now is None:
        return
    diffs = [f"{k} {cal.get(k)!r} (calibrated) vs {now.get(k)!r} (loaded)" for k in READING_KEYS
             if cal.get(k) is not None and now.get(k) is not None and cal.get(k) != now.get(k)]
    if diffs:
        raise ValueError(f"{path} was calibrated on another reading: {'; '.join(diffs)}. Calibrate this model "
                         "and axis on its own drafts (`valueagent run humaneval --split calibration --policy "
                         "single ...` then `valueagent calibrate`), or load the model and axis it was made for")


def load_gate_configs(path: str | Path) -> tuple[dict[str, GateConfig], dict[str, Any]]:
    """The per-policy gate configs of a calibration file, and the whole document."""
    document = json.loads(Path(path).read_text())
    if document.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a gate calibration file ({FORMAT}); make one with `valueagent calibrate`"
        )
    return {k: GateConfig.from_dict(v) for k, v in document["policies"].items()}, document
