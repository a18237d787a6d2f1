"""Gate policies: factories returning small functions that turn a reading into a decision.

A reading covers a span of the current attempt: a *segment* (mid-trajectory) or the whole attempt when it
is *final*. Its signals are the mean raw value (cosine with the axis), the position-normalized value
``z = mean_i (v_i - (a + b * log1p(pos_i))) / s`` (the raw projection drifts with token position, FACTS),
and the mean token log-probability. Each policy maps them to one score (higher = better):

- ``value``: ``z``;  ``logprob``: mean log-probability;
- ``value+logprob``: the logit ``w0 + w_v * z + w_l * logprob`` of a logistic model fitted on calibration;
- ``random``: decisions are Bernoulli draws at the value gate's own rates (the score is logged only);
- ``none``: no gate (``single``, ``always-test``, ``steer-*``).

Segment rule: ``backtrack`` when ``score < backtrack_below`` or ``score - best_earlier < drop_below``, else
``continue``. Final rule per ``tests``: ``never`` accepts, ``always`` runs the visible tests, ``gate``
accepts without tests when ``score >= accept_above`` and runs them otherwise. Budgets are applied by the
gate node, not here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

Signal = Literal["none", "value", "logprob", "value+logprob", "random"]
TestsMode = Literal["never", "always", "gate"]
Verdict = Literal["continue", "backtrack", "run_tests", "accept"]


@dataclass(frozen=True, kw_only=True)
class GateConfig:
    """Everything a gate needs, JSON-serializable (``to_dict`` / ``from_dict``) and saved by calibration.

    Thresholds left ``None`` never fire. ``skip_repeat_backtracks``: do not backtrack when resampling would
    reproduce the dropped text token for token (every dropped token had probability above both 0.5 and
    the resample's top_p, at temperature <= 1); on by default since the 124-task comparison showed 126 of 155
    backtracks redrawing what they dropped — the committed calibration files say ``false``, so the committed
    runs reproduce as they ran. ``branch``: a backtrack cuts the attempt just before the highest-entropy token
    of the last 16 and resamples from there, never taking that token again (``value-branch``,
    ``logprob-branch``).
    ``value_baseline`` is ``(a, b)`` of the position drift ``a + b * log1p(pos)`` and ``value_scale`` the
    residual spread ``s``; the defaults leave values raw.
    """

    signal: Signal = "value"
    tests: TestsMode = "gate"
    backtrack_below: float | None = None
    drop_below: float | None = None
    accept_above: float | None = None
    value_baseline: tuple[float, float] = (0.0, 0.0)
    value_scale: float = 1.0
    weights: tuple[float, float, float] = (0.0, 1.0, 1.0)  # logistic: bias, value z, mean logprob
    rates: Mapping[str, float] = field(default_factory=lambda: {"backtrack": 0.0, "accept": 0.0})
    min_tokens: int = 4
    skip_repeat_backtracks: bool = True  # see agent.nodes.resample_repeats
    branch: bool = False  # backtrack = branch at the most uncertain recent token (agent.nodes.branch_point)
    seed: int = 0
    calibrated: bool = False
    notes: str = ""
    search: Mapping[str, Any] = field(default_factory=dict)  # a search policy's fitted parameters (agent.search)

    def __post_init__(self) -> None:
        if self.signal not in get_args(Signal):  # a plugin's gate on an unknown signal would never act
            raise ValueError(f"gate signal {self.signal!r} is not one the segment gate reads: use "
                             f"{', '.join(get_args(Signal))} (a new whole-answer signal: register_signal and a "
                             "search policy on it)")
        if self.value_scale <= 0:
            raise ValueError(f"value_scale must be > 0, got {self.value_scale}")
        for key in ("backtrack", "accept"):
            if not 0.0 <= float(self.rates.get(key, 0.0)) <= 1.0:
                raise ValueError(f"rates[{key!r}] must be a probability in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["value_baseline"] = list(self.value_baseline)
        data["weights"] = list(self.weights)
        data["rates"] = dict(self.rates)
        data["search"] = dict(self.search)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateConfig:
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("value_baseline", "weights"):
            if key in kwargs:
                kwargs[key] = tuple(float(x) for x in kwargs[key])
        if "rates" in kwargs:
            kwargs["rates"] = {k: float(v) for k, v in kwargs["rates"].items()}
        return cls(**kwargs)

    def with_(self, **changes: Any) -> GateConfig:
        return replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class Signals:
    """The signals of one span (``None`` where the backend gave no reading)."""

    value: float | None
    value_norm: float | None
    logprob: float | None
    n_tokens: int


@dataclass(frozen=True, kw_only=True)
class GateInput:
    kind: Literal["segment", "final"]
    signals: Signals
    best_before: float | None  # best score of an earlier segment in this attempt
    draw: float  # uniform in [0, 1), deterministic per (seed, task, step)


@dataclass(frozen=True, kw_only=True)
class GateOutcome:
    verdict: Verdict
    score: float | None
    drop: float | None
    reason: str


Gate = Callable[[GateInput], GateOutcome]
Scorer = Callable[[Signals], float | None]


def _mean(xs: Sequence[float]) -> float | None:
    return float(sum(xs) / len(xs)) if xs else None


def normalize(values: Sequence[float], start: int, config: GateConfig) -> list[float]:
    """Position-normalized values: ``(v_i - (a + b * log1p(start + i))) / s``."""
    a, b = config.value_baseline
    return [(v - (a + b * math.log1p(start + i))) / config.value_scale for i, v in enumerate(values)]


def signals_of(values: Sequence[float], logprobs: Sequence[float], start: int, config: GateConfig) -> Signals:
    """Signals of a span whose first token sits at ``start`` in the attempt."""
    return Signals(
        value=_mean(values),
        value_norm=_mean(normalize(values, start, config)),
        logprob=_mean(logprobs),
        n_tokens=max(len(values), len(logprobs)),
    )


def scorer(config: GateConfig) -> Scorer:
    """The policy's score of a span (higher = better), or ``None`` when its signal is missing."""
    if config.signal in ("value", "random"):
        return lambda s: s.value_norm
    if config.signal == "logprob":
        return lambda s: s.logprob
    if config.signal == "value+logprob":
        w0, wv, wl = config.weights

        def combined(s: Signals) -> float | None:
            if s.value_norm is None or s.logprob is None:
                return None
            return w0 + wv * s.value_norm + wl * s.logprob

        return combined
    if config.signal == "none":
        return lambda s: None
    raise ValueError(f"gate signal {config.signal!r} has no scorer")  # unreachable: __post_init__ refuses it


def _final_threshold_gate(config: GateConfig) -> Callable[[float | None], tuple[Verdict, str]]:
    def decide(score: float | None) -> tuple[Verdict, str]:
        if config.tests == "never":
            return "accept", "policy never tests"
        if config.tests == "always":
            return "run_tests", "policy always tests"
        if config.accept_above is not None and score is not None and score >= config.accept_above:
            return "accept", f"score {score:.4g} >= accept_above {config.accept_above:.4g}"
        if config.accept_above is None:
            return "run_tests", "no accept threshold"
        return "run_tests", f"score below accept_above {config.accept_above:.4g}"

    return decide


def threshold_gate(config: GateConfig) -> Gate:
    """The value / logprob / value+logprob gate: thresholds on the policy's score (see module doc)."""
    score_of = scorer(config)
    final = _final_threshold_gate(config)

    def gate(inp: GateInput) -> GateOutcome:
        score = score_of(inp.signals)
        drop = None if score is None or inp.best_before is None else score - inp.best_before
        if inp.kind == "final":
            verdict, reason = final(score)
            return GateOutcome(verdict=verdict, score=score, drop=drop, reason=reason)
        if config.signal == "none" or score is None:
            return GateOutcome(verdict="continue", score=score, drop=drop, reason="no gate signal")
        if inp.signals.n_tokens < config.min_tokens:
            return GateOutcome(verdict="continue", score=score, drop=drop, reason="segment too short to read")
        if config.backtrack_below is not None and score < config.backtrack_below:
            reason = f"score {score:.4g} < backtrack_below {config.backtrack_below:.4g}"
            return GateOutcome(verdict="backtrack", score=score, drop=drop, reason=reason)
        if config.drop_below is not None and drop is not None and drop < config.drop_below:
            reason = f"drop {drop:.4g} < drop_below {config.drop_below:.4g}"
            return GateOutcome(verdict="backtrack", score=score, drop=drop, reason=reason)
        return GateOutcome(verdict="continue", score=score, drop=drop, reason="score above thresholds")

    return gate


def random_gate(config: GateConfig) -> Gate:
    """Decisions drawn at fixed rates: backtrack a segment with ``rates['backtrack']``, accept a finished
    attempt without tests with ``rates['accept']`` (the value gate's own rates, from calibration)."""
    score_of = scorer(config)
    p_back = float(config.rates.get("backtrack", 0.0))
    p_accept = float(config.rates.get("accept", 0.0))

    def gate(inp: GateInput) -> GateOutcome:
        score = score_of(inp.signals)
        drop = None if score is None or inp.best_before is None else score - inp.best_before
        if inp.kind == "final":
            if inp.draw < p_accept:
                return GateOutcome(verdict="accept", score=score, drop=drop, reason=f"draw < {p_accept:.3g}")
            return GateOutcome(verdict="run_tests", score=score, drop=drop, reason=f"draw >= {p_accept:.3g}")
        if inp.signals.n_tokens >= config.min_tokens and inp.draw < p_back:
            return GateOutcome(verdict="backtrack", score=score, drop=drop, reason=f"draw < {p_back:.3g}")
        return GateOutcome(verdict="continue", score=score, drop=drop, reason="random continue")

    return gate


def make_gate(config: GateConfig) -> Gate:
    """The gate function for ``config.signal``."""
    return random_gate(config) if config.signal == "random" else threshold_gate(config)


def draw(seed: int, task_id: str, step: int) -> float:
    """A reproducible uniform draw for reading ``step`` of ``task_id`` (no RNG state to checkpoint)."""
    return random.Random(f"{seed}|{task_id}|{step}").random()
