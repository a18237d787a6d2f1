"""The policy registry: a policy is a :class:`PolicySpec` registered by name, carrying its signal, its
decision rule and (optionally) its own graph topology. The eight original policies share one graph
machinery (different gates, test modes, steering and segmenting); search policies
(:mod:`valueagent.agent.search`) bring their own topology. A policy from outside the package is one
``register_policy(PolicySpec(...))`` in a module the CLI imports (``--plugin MODULE``, the
``VALUEAGENT_PLUGINS`` variable, or the ``valueagent.policies`` entry-point group).

Sampling (FACTS: greedy revisions are byte-identical, so every second try samples):

- first attempt: greedy (``temperature 0``) for every policy, so all policies share the same first draft
  (``steer-*`` aside, which steer it);
- backtrack resamples and the rest of that attempt: ``temperature 0.8, top_p 0.95``;
- revisions (failing visible tests as feedback): ``temperature 0.8, top_p 0.95``;
- seeds: ``per-task seed * 1_000_003 + call index``, so every call samples differently and reproducibly.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal, get_args

from valueagent.agent.gate import Gate, GateConfig, Signal, TestsMode

PolicyName = Literal[
    "single", "always-test", "value", "steer-high", "steer-low",
    "random-gate", "logprob-gate", "value+logprob",
]
POLICY_NAMES: tuple[str, ...] = get_args(PolicyName)
"""The eight original policies (their records are read by name); :func:`policy_names` lists every registered one."""
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
    needs_axis: bool | None = None  # None: derived from the signal and steering
    topology: Callable[..., Any] | None = None  # (backend, settings, sandbox) -> StateGraph; None: the shared one
    gate: Gate | None = None  # a custom gate function replacing the one built from the GateConfig
    search: Any = None  # a search policy's parameters (valueagent.agent.search.SearchSpec)
    branch: bool = False  # a backtrack branches at the most uncertain recent token (GateConfig.branch)
    calibration: str | None = None  # whose calibrated thresholds it uses when it has none of its own
    controls: tuple[str, ...] = ()  # the policies it is paired with at matched cost (summary, compare)

    @property
    def reads_value(self) -> bool:
        """Whether the policy cannot run without a value axis (it reads or steers along it)."""
        if self.needs_axis is not None:
            return self.needs_axis
        return self.steer != 0 or self.signal in ("value", "value+logprob") or bool(
            getattr(self.search, "needs_axis", False))

    @property
    def needs_calibration(self) -> bool:
        """Whether the policy has thresholds that must come from calibration."""
        return (self.tests == "gate" and self.gate is None) or bool(getattr(self.search, "needs_calibration", False))

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


_REGISTRY: dict[str, PolicySpec] = {}
POLICIES: Mapping[str, PolicySpec] = MappingProxyType(_REGISTRY)
"""Every registered policy by name (a read-only live view of the registry)."""


def register_policy(spec: PolicySpec, *, replace: bool = False) -> PolicySpec:
    """Add ``spec`` to the registry under ``spec.name``; every command then finds it. Returns ``spec``."""
    if not spec.name or "," in spec.name or spec.name != spec.name.strip():
        raise ValueError(f"policy name {spec.name!r} must be non-empty, without commas or surrounding spaces")
    if spec.name in _REGISTRY and not replace and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"policy {spec.name!r} is already registered; pass replace=True to redefine it")
    _REGISTRY[spec.name] = spec
    return spec


def policy_names() -> tuple[str, ...]:
    """The names of every registered policy, in registration order."""
    _load_builtin()
    return tuple(_REGISTRY)


for _spec in (  # registration order is the order of the control pairs in every summary
    _whole("single", "never", "one greedy generation; no gate, no tests (the ungated model)"),
    _whole("always-test", "always", "generate, always run the visible tests, revise on failure (Reflexion-style)"),
    replace(_gated("value", "value", "value-gated: backtrack on low/dropping value, skip tests when value is high"),
            controls=("random-gate", "logprob-gate", "always-test")),
    _gated("random-gate", "random", "the gated structure with random decisions at the value gate's rates"),
    _gated("logprob-gate", "logprob", "the gated structure on mean token log-probability"),
    replace(_gated("value+logprob", "value+logprob",
                   "the gated structure on a logistic combination of value and log-probability"),
            controls=("logprob-gate",)),
    PolicySpec(name="value-branch", signal="value", tests="gate", segmented=True, branch=True, calibration="value",
               description="the value gate, but a backtrack branches at the most uncertain of the last 16 tokens, "
               "excluding the token taken there", controls=("random-branch", "logprob-branch")),
    PolicySpec(name="logprob-branch", signal="logprob", tests="gate", segmented=True, branch=True,
               calibration="logprob-gate", description="the log-prob gate with the same branching action"),
    PolicySpec(name="random-branch", signal="random", tests="gate", segmented=True, branch=True,
               calibration="random-gate", description="the control: branches at the value gate's rate, at random"),
    replace(_whole("steer-high", "always", "always-test with every generation steered toward high value (+16.8%)",
                   steer=STEER_FRACTION), controls=("always-test",)),
    replace(_whole("steer-low", "always", "always-test with every generation steered toward low value (-16.8%)",
                   steer=-STEER_FRACTION), controls=("always-test",)),
):
    register_policy(_spec)

PLUGIN_ENV = "VALUEAGENT_PLUGINS"
ENTRY_POINT_GROUP = "valueagent.policies"


def _load_builtin() -> None:
    """The search policies register on import of their module (kept lazy: it is not needed to name the eight)."""
    importlib.import_module("valueagent.agent.search")


def load_policy_plugins(modules: Sequence[str] = ()) -> list[str]:
    """Import policy modules: ``modules``, those named in ``$VALUEAGENT_PLUGINS`` (comma-separated) and the
    ``valueagent.policies`` entry points. Importing a module registers its policies. Returns what was loaded."""
    from importlib.metadata import entry_points

    _load_builtin()
    names = [*modules, *(m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(",") if m.strip())]
    loaded = []
    for name in dict.fromkeys(names):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"policy plugin {name!r} cannot be imported ({exc}); put its folder on PYTHONPATH "
                             "or install it") from None
        loaded.append(name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
        loaded.append(ep.value)
    return loaded


def control_pairs() -> tuple[tuple[str, str], ...]:
    """(policy, its matched-cost control) for every registered policy's declared controls that are registered
    too, in registration order: the pairs every summary and comparison reports, plugins' included."""
    _load_builtin()
    return tuple((name, c) for name, spec in _REGISTRY.items() for c in spec.controls if c in _REGISTRY)


def policy_spec(name: str) -> PolicySpec:
    """The spec of a policy by name; raises with the list of valid names."""
    if name not in _REGISTRY:
        _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of: {', '.join(policy_names())} (a policy of your "
                         f"own: register_policy in a module passed with --plugin)") from None


def default_gate_config(name: str) -> GateConfig:
    """An uncalibrated gate config for a policy: its signal and test mode, no thresholds.

    Uncalibrated gated policies never backtrack and always test; calibrate (``valueagent calibrate``)
    to give them thresholds.
    """
    spec = policy_spec(name)
    return GateConfig(signal=spec.signal, tests=spec.tests)

