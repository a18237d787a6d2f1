"""Signals: small functions over one sample's per-token trace that score how likely it is correct (higher
is better). Fixed signals need nothing else; fitted ones (``probe``, ``value+logprob``) are fitted on
calibration tasks only and then score any sample.

All come from the same decode pass: values (the axis reading), log-probs, entropies and top-k log-probs
that the backend records per generated token, and the mean residual at the axis layer (the probe's input).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from valueagent.stats import logistic_regression


class SignalError(ValueError):
    """A signal cannot be computed or fitted as asked; the message says what to fix."""


def pack_vector(vec: Sequence[float] | None) -> str | None:
    """A vector as base64 float16 (a bank's compact form of the mean residual)."""
    if vec is None:
        return None
    return base64.b64encode(np.asarray(vec, dtype="<f2").tobytes()).decode("ascii")


def unpack_vector(data: str | Sequence[float] | None) -> np.ndarray | None:
    """The inverse of :func:`pack_vector`; a plain list of floats (a live generation) passes through."""
    if data is None:
        return None
    if isinstance(data, str):
        return np.frombuffer(base64.b64decode(data), dtype="<f2").astype(np.float32)
    return np.asarray(data, dtype=np.float32)


Sample = Mapping[str, Any]


def trace_record(values: Sequence[float], logprobs: Sequence[float], entropies: Sequence[float],
                 top_logprobs: Sequence[Sequence[float]], hidden_mean: Sequence[float] | None) -> dict[str, Any]:
    """A generation's readings in the precision a bank stores them (4 decimals, top-k 3, the mean residual in
    float16): a live policy scores this form, so it ranks exactly as its replay from a bank does."""
    return {"values": [round(float(v), 4) for v in values], "logprobs": [round(float(v), 4) for v in logprobs],
            "entropies": [round(float(v), 4) for v in entropies],
            "top_logprobs": [[round(float(x), 3) for x in t] for t in top_logprobs],
            "hidden_mean": pack_vector(hidden_mean)}
SignalFn = Callable[[Sample], float]

WINDOW = 16
"""Tokens per sliding group (DeepConf's group confidence; its 2,048 is for long math traces, not ~200-token
functions)."""


def _arr(sample: Sample, key: str) -> np.ndarray:
    return np.asarray(sample[key], dtype=np.float64)


def token_confidence(sample: Sample) -> np.ndarray:
    """DeepConf's token confidence ``C_i = -mean_j log P_i(j)`` over the top-k tokens, per token. A peaked
    distribution has one log-prob near 0 and the rest very negative, so ``C_i`` is large when confident."""
    tops = sample["top_logprobs"]
    if not tops:
        return np.zeros(0)
    out: np.ndarray = -np.asarray(tops, dtype=np.float64).mean(axis=1)  # (T, k) -> (T,)
    return out


def windows(x: np.ndarray, w: int = WINDOW) -> np.ndarray:
    """Means over sliding windows of ``w`` tokens (one window over the whole trace when it is shorter)."""
    rw = running_window(x, w)
    if len(rw):
        return rw
    return np.asarray([x.mean()]) if len(x) else np.zeros(1)


def running_window(x: np.ndarray, w: int = WINDOW) -> np.ndarray:
    """Per token t >= w - 1, the mean of the last ``w`` tokens (what an online stop rule sees at t)."""
    if len(x) < w:
        return np.zeros(0)
    c = np.cumsum(np.r_[0.0, x])
    means: np.ndarray = (c[w:] - c[:-w]) / w
    return means


STOP_TRACES: Mapping[str, Callable[[Sample], np.ndarray]] = MappingProxyType({
    "value": lambda sample: _arr(sample, "values"),
    "confidence": token_confidence,
})
"""Per-token traces an early-stop rule watches, in the form both the decode loop (on the tokens so far) and a
replay (on a whole stored sample) read: one implementation of each."""


def window_low(trace: np.ndarray, threshold: float, w: int = WINDOW) -> bool:
    """Whether the mean of the last ``w`` entries of ``trace`` is <= ``threshold`` (False before ``w``
    tokens): the stop rule as the decode loop applies it after each token."""
    return len(trace) >= w and float(trace[-w:].mean()) <= threshold


def _mean(key: str, sign: float = 1.0) -> SignalFn:
    def fn(sample: Sample) -> float:
        x = _arr(sample, key)
        return sign * float(x.mean()) if len(x) else 0.0

    return fn


def value_lowest(sample: Sample) -> float:
    return float(windows(_arr(sample, "values")).min())


def confidence_lowest(sample: Sample) -> float:
    """DeepConf's lowest group confidence."""
    return float(windows(token_confidence(sample)).min())


def confidence_tail(sample: Sample) -> float:
    """DeepConf's tail confidence: the mean over the last ``2 * WINDOW`` tokens."""
    c = token_confidence(sample)
    return float(c[-2 * WINDOW:].mean()) if len(c) else 0.0


SignalKind = Literal["fixed", "fitted", "index"]


@dataclass(frozen=True, kw_only=True)
class SignalSpec:
    """A signal, registered once by name and looked up by every consumer (replay, the live search policies,
    heads' baselines). ``score`` maps one sample (the mapping a bank stores and a live generation gives:
    ``token_ids``, ``values``, ``logprobs``, ``entropies``, ``top_logprobs``, ``hidden_mean``) to a float,
    higher = more likely correct. ``kind``: ``fixed`` (needs nothing else), ``fitted`` (made from
    calibration samples by :func:`fit_signals`; no ``score`` until fitted) or ``index`` (scores a sample by its
    position: the ``random`` and ``order`` controls). ``needs_axis``: it reads the value axis."""

    name: str
    kind: SignalKind = "fixed"
    score: SignalFn | None = None
    needs_axis: bool = False
    description: str = ""


_SIGNALS: dict[str, SignalSpec] = {}
_FIXED: dict[str, SignalFn] = {}
FIXED: Mapping[str, SignalFn] = MappingProxyType(_FIXED)
"""Every registered fixed signal by name: name -> score of one sample (a live view of the registry)."""


def register_signal(spec: SignalSpec, *, replace: bool = False) -> SignalSpec:
    """Add a signal; replay, the live search policies and the CLI then find it by name. Returns ``spec``."""
    if not spec.name or any(c in spec.name for c in ", |") or spec.name.endswith(("-rank", "-top1", "-seq")):
        raise SignalError(f"signal name {spec.name!r} must be non-empty, without commas, spaces or '|', and not "
                          "end in an action (-rank, -top1, -seq)")
    if spec.name in _SIGNALS and not replace and _SIGNALS[spec.name] != spec:
        raise SignalError(f"signal {spec.name!r} is already registered; pass replace=True to redefine it")
    if (spec.kind == "fixed") != (spec.score is not None):
        raise SignalError(f"signal {spec.name!r}: a fixed signal needs a score function, other kinds have none")
    _SIGNALS[spec.name] = spec
    if spec.score is not None:
        _FIXED[spec.name] = spec.score
    else:
        _FIXED.pop(spec.name, None)
    return spec


def signal_spec(name: str) -> SignalSpec:
    """The registered signal ``name``; an error naming the known ones otherwise (never a silent default)."""
    try:
        return _SIGNALS[name]
    except KeyError:
        raise SignalError(f"unknown signal {name!r}: choose from {', '.join(_SIGNALS)} (a signal of your own: "
                          "register_signal in a module passed with --plugin)") from None


def signal_names(kind: SignalKind | None = None) -> tuple[str, ...]:
    """Registered signal names (of one ``kind``), in registration order."""
    return tuple(n for n, s in _SIGNALS.items() if kind is None or s.kind == kind)


for _spec in (
    SignalSpec(name="value", score=_mean("values"), needs_axis=True, description="mean value reading"),
    SignalSpec(name="value-lowest", score=value_lowest, needs_axis=True,
               description="lowest windowed value reading"),
    SignalSpec(name="logprob", score=_mean("logprobs"), description="mean token log-probability"),
    SignalSpec(name="entropy", score=_mean("entropies", -1.0), description="minus the mean token entropy"),
    SignalSpec(name="confidence", score=confidence_lowest, description="DeepConf's lowest group confidence"),
    SignalSpec(name="confidence-tail", score=confidence_tail, description="DeepConf's tail confidence"),
    SignalSpec(name="probe", kind="fitted", needs_axis=True,
               description="logistic regression on the axis layer's mean residual"),
    SignalSpec(name="value+logprob", kind="fitted", needs_axis=True,
               description="logistic regression on the mean value and log-prob"),
    SignalSpec(name="random", kind="index", description="a reproducible random score (control)"),
    SignalSpec(name="order", kind="index", description="sample order (control)"),
):
    register_signal(_spec)

FITTED = signal_names("fitted")
CONTROLS = signal_names("index")


def uniform_draw(seed: int, task_id: str, index: int) -> float:
    """A reproducible uniform number for (seed, task, sample): the random control, identical live and replayed."""
    return int(hashlib.sha256(f"{seed}:{task_id}:{index}".encode()).hexdigest()[:12], 16) / 16**12


def probe_features(sample: Sample) -> np.ndarray:
    vec = unpack_vector(sample.get("hidden_mean"))
    if vec is None:
        raise SignalError("this sample has no mean residual (hidden_mean): the probe needs samples generated "
                          "with hidden_mean=True (every bank has them)")
    return vec.astype(np.float64)


def pair_features(sample: Sample) -> np.ndarray:
    return np.asarray([FIXED["value"](sample), FIXED["logprob"](sample)])


FEATURES: dict[str, Callable[[Sample], np.ndarray]] = {"probe": probe_features, "value+logprob": pair_features}


@dataclass(frozen=True)
class Logistic:
    """A standardised L2 logistic regression over one feature map, kept as plain numbers (JSON round trip)."""

    features: str
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(((x - self.mean) / self.scale) @ self.coef + self.intercept)

    def signal(self) -> SignalFn:
        feat = FEATURES[self.features]
        return lambda sample: float(self.score(feat(sample)[None])[0])

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Logistic:
        return cls(str(data["features"]), np.asarray(data["mean"], np.float64), np.asarray(data["scale"], np.float64),
                   np.asarray(data["coef"], np.float64), float(data["intercept"]))


def fit_logistic(features: str, samples: Sequence[Sample], c: float = 1.0) -> Logistic:
    """Fit on samples with their hidden verdicts (calibration tasks only); ``c`` is the inverse penalty
    (sklearn's ``C``) on standardized features."""
    y = np.asarray([bool(s["hidden_passed"]) for s in samples])
    if len(set(y.tolist())) < 2:
        raise SignalError("the calibration samples all pass or all fail: a fitted signal needs both outcomes")
    x = np.stack([FEATURES[features](s) for s in samples])
    mean, scale = x.mean(0), x.std(0) + 1e-8
    coef, intercept = logistic_regression((x - mean) / scale, y, l2=1.0 / c)
    return Logistic(features, mean, scale, coef, intercept)


def fit_signals(calibration: Sequence[Sample]) -> dict[str, Logistic]:
    """The fitted signals, trained on calibration samples (their hidden verdicts) only.

    ``probe``: logistic regression on the mean residual at the axis layer (C = 0.05: ~900 features, a few
    hundred samples). ``value+logprob``: logistic regression on the two mean readings."""
    return {"probe": fit_logistic("probe", calibration, c=0.05),
            "value+logprob": fit_logistic("value+logprob", calibration)}
