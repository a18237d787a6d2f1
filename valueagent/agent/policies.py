"""The eight policies: one graph machinery, different gates, test modes, steering and segmenting.

Sampling (FACTS: greedy revisions are byte-identical, so every second try samples):

- first attempt: greedy (``temperature 0``) for every policy, so all policies share the same first draft
  (``steer-*`` aside, which steer it);
- backtrack resamples and the rest of that attempt: ``temperature 0.8, top_p 0.95``;
- revisions (failing visible tests as feedback): ``temperature 0.8, top_p 0.95``;
- seeds: ``per-task seed * 1_000_003 + call index``, so every call samples differently and reproducibly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from valueagent.agent.gate import GateConfig, Signal, TestsMode

PolicyName = Literal[
    "single", "always-test", "value", "steer-high", "steer-low",
    "random-gate", "logprob-gate", "value+logprob",
]
POLICY_NAMES: tuple[str, ...] = get_args(PolicyName)
STEER_FRACTION = 0.168
"""The paper's strong steering setting: alpha 50 at a residual norm of ~298 (16.8%); > ~23% breaks text."""


@dataclass(frozen=True, kw_only=True)
class SamplingSpec:
    temperature: float
    top_p: float = 1.0

    def as_dict(self) -> dict[str, float]:
        return {"temperature": self.temperature, "top_p": self.top_p}


GREEDY = SamplingSpec(temperature=0.0)
SAMPLED = SamplingSpec(temperature=0.8, top_p=0.95)


@dataclass(frozen=True, kw_only=True)
class PolicySpec:
    """How a policy runs on the shared graph.

    ``segmented`` gated policies write ``segment_tokens`` at a time so the gate can act mid-trajectory;
    the others write each answer in one call. ``revise`` is ``feedback`` (failing cases appended to the
    conversation) or ``fresh`` (a new sample of the original prompt). ``fresh`` is the default: on the
    embedded model, sampled feedback revisions fixed 0 of 6 failing HumanEval tasks while fresh samples of
    the original prompt fixed 3 of 6 (FACTS.md); at this scale resampling helps and feedback does not.
    """

    name: str
    signal: Signal
    tests: TestsMode
    segmented: bool
    steer: float = 0.0
    first: SamplingSpec = GREEDY
    resample: SamplingSpec = SAMPLED
    revise: SamplingSpec = SAMPLED
    revise_mode: Literal["feedback", "fresh"] = "fresh"
    description: str = ""

    def sampling_settings(self) -> dict[str, object]:
        """The sampling settings recorded with every result of this policy."""
        return {
            "first": self.first.as_dict(),
            "resample": self.resample.as_dict(),
            "revise": self.revise.as_dict(),
            "revise_mode": self.revise_mode,
            "steer": self.steer,
            "seed_rule": "task_seed * 1000003 + call_index",
        }


def _whole(name: str, tests: TestsMode, description: str, steer: float = 0.0) -> PolicySpec:
    """A policy that writes each answer in one call (no gate)."""
    return PolicySpec(name=name, signal="none", tests=tests, segmented=False, steer=steer, description=description)


def _gated(name: str, signal: Signal, description: str) -> PolicySpec:
    """A policy on the gated structure: segments, a gate on ``signal``, tests when the gate asks."""
    return PolicySpec(name=name, signal=signal, tests="gate", segmented=True, description=description)


POLICIES: Mapping[str, PolicySpec] = {p.name: p for p in (
    _whole("single", "never", "one greedy generation; no gate, no tests (the ungated model)"),
    _whole("always-test", "always", "generate, always run the visible tests, revise on failure (Reflexion-style)"),
    _gated("value", "value", "value-gated: backtrack on low/dropping value, skip tests when value is high"),
    _whole("steer-high", "always", "always-test with every generation steered toward high value (+16.8%)",
           steer=STEER_FRACTION),
    _whole("steer-low", "always", "always-test with every generation steered toward low value (-16.8%)",
           steer=-STEER_FRACTION),
    _gated("random-gate", "random", "the gated structure with random decisions at the value gate's rates"),
    _gated("logprob-gate", "logprob", "the gated structure on mean token log-probability"),
    _gated("value+logprob", "value+logprob",
           "the gated structure on a logistic combination of value and log-probability"),
)}


def policy_spec(name: str) -> PolicySpec:
    """The spec of a policy by name; raises with the list of valid names."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of: {', '.join(POLICY_NAMES)}") from None


def default_gate_config(name: str) -> GateConfig:
    """An uncalibrated gate config for a policy: its signal and test mode, no thresholds.

    Uncalibrated gated policies never backtrack and always test; calibrate (``valueagent calibrate``)
    to give them thresholds.
    """
    spec = policy_spec(name)
    return GateConfig(signal=spec.signal, tests=spec.tests)


def resolve_gate_config(name: str, config: GateConfig | None) -> GateConfig:
    """``config`` forced to the policy's signal and test mode (one calibration file serves all policies)."""
    spec = policy_spec(name)
    base = config if config is not None else default_gate_config(name)
    return base.with_(signal=spec.signal, tests=spec.tests)

