"""Search policies: a signal paired with a whole-answer action, each registered under its own name.

- ``<signal>-rank`` (best of N, then tests): N fresh samples in one batch; the visible tests run in signal
  order until one passes; with no visible tests or none passing, the top-ranked is submitted.
- ``<signal>-seq`` (sequential gate): after each fresh sample the signal decides: accept untested
  (``score >= accept``), discard and resample untested (``score <= discard``), or run the tests.
- ``<signal>-stop`` (early stop): fresh samples in order, each abandoned at the first token where the mean
  of its last 16 readings falls to the threshold; a finished one is tested; the first to pass is the answer.

The decisions are the rules of :mod:`valueagent.search_rules`, driven here by the model and the sandbox and
by a replay with a bank's samples and verdicts. Samples are drawn exactly as a sample bank draws them
(``valueagent.bank``): sample ``j`` (1..N) at temperature 0.8, top-p 0.95 with seed
``task_seed * 1_000_003 + j``, so a live run and its replay from a bank make the same choices. Thresholds
and fitted signals (``probe``, ``value+logprob``) come from ``bank replay --gate-config-out`` on calibration
tasks, under the policy's ``search`` entry of a gate config; a policy that needs them refuses to run
without.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
from langgraph.graph import END, START, StateGraph

from valueagent import search_rules as rules
from valueagent.agent.checks import SandboxProvider, run_visible_tests
from valueagent.agent.nodes import SEED_STRIDE, make_prepare_node, record_reading
from valueagent.agent.policies import SAMPLED, PolicySpec, register_policy
from valueagent.agent.prompts import completion_for, extract_code
from valueagent.agent.settings import AgentSettings
from valueagent.agent.state import AgentInput, AgentOutput, AgentState, Candidate, TestRun
from valueagent.runtime.generation import AbortTrace, Generation, GenerationRequest, ValueBackend
from valueagent.signals import Logistic, SignalFn, signal_spec, trace_record, uniform_draw

Action = Literal["rank", "seq", "stop"]


@dataclass(frozen=True, kw_only=True)
class SearchSpec:
    """A search policy's action and the registered signal (``valueagent.signals``) it acts on."""

    action: Action
    signal: str
    samples: int = 8

    def __post_init__(self) -> None:
        signal_spec(self.signal)  # an unknown signal is an error where it is named

    @property
    def needs_axis(self) -> bool:
        return signal_spec(self.signal).needs_axis

    @property
    def needs_calibration(self) -> bool:
        return self.action in ("seq", "stop") or signal_spec(self.signal).kind == "fitted"


class MissingCalibration(ValueError):
    """A search policy's thresholds or fitted signal are not in its gate config."""


def _sample_dict(gen: Generation) -> dict[str, Any]:
    return {**trace_record(gen.values, gen.logprobs, gen.entropies, gen.top_logprobs, gen.hidden_mean),
            "token_ids": gen.token_ids}


def signal_fn(name: str, fitted: Mapping[str, Any]) -> SignalFn | None:
    """The live score of a sample for signal ``name`` (None for ``random``/``order``, which score by index)."""
    spec = signal_spec(name)
    if spec.score is not None:
        return spec.score
    if spec.kind == "fitted":
        params = fitted.get(name)
        if params is None:
            raise MissingCalibration(f"{name} is a fitted signal and the gate config has no `search.{name}`: "
                                     "make one with `valueagent bank replay BANK --gate-config-out FILE`")
        return Logistic.from_dict(params).signal()
    return None


def index_score(name: str, seed: int, task_id: str, j: int) -> float:
    return uniform_draw(seed, task_id, j) if name == "random" else -float(j)


def make_search_node(backend: ValueBackend, settings: AgentSettings, sandbox: SandboxProvider) -> Any:
    """The node that runs a search policy from the prepared state to the final answer."""
    spec: SearchSpec = settings.policy.search
    params = dict(settings.gate.search)
    if spec.action == "seq" and not {"accept", "discard"} <= set(params):
        raise MissingCalibration(f"{settings.policy.name} needs `search.accept` and `search.discard` thresholds: "
                                 "make them with `valueagent bank replay BANK --gate-config-out FILE`")
    if spec.action == "stop" and "threshold" not in params:
        raise MissingCalibration(f"{settings.policy.name} needs a `search.threshold`: make it with "
                                 "`valueagent bank replay BANK --gate-config-out FILE`")

    async def search(state: AgentState) -> dict[str, Any]:
        task = state["task"]
        seed = int(state["seed"])
        score_fn = signal_fn(spec.signal, params.get("fitted", {}))
        used = state["used"].copy()
        trace = list(state["trace"])
        tests: list[TestRun] = []
        candidates: list[Candidate] = []
        samples: dict[int, dict[str, Any]] = {}

        abort: tuple[AbortTrace, float] | None = None
        if spec.action == "stop" and params.get("threshold") is not None:
            abort = (cast(AbortTrace, spec.signal), float(params["threshold"]))

        def request(j: int) -> GenerationRequest:
            return GenerationRequest(
                messages=tuple(state["messages"]), assistant_prefix=settings.prompt.prefill,
                max_new_tokens=settings.answer_tokens, temperature=SAMPLED.temperature, top_p=SAMPLED.top_p,
                seed=seed * SEED_STRIDE + j, stop=settings.prompt.stop, hidden_mean=spec.signal == "probe",
                abort_below=abort)

        def add(j: int, gen: Generation) -> float:
            sample = _sample_dict(gen)
            code = extract_code(settings.prompt.prefill + gen.text, task["entry_point"])
            score = score_fn(sample) if score_fn is not None else index_score(spec.signal, seed, task["task_id"], j)
            samples[j] = {"code": code, "score": float(score), "gen": gen}
            used["tokens"] += gen.n_tokens
            candidates.append(Candidate(attempt=j, code=code, score=round(float(score), 6), visible_passed=None,
                                        visible_total=None, values=[round(v, 6) for v in gen.values],
                                        logprobs=[round(v, 6) for v in gen.logprobs]))
            trace.append(record_reading(state, trace, kind="final", n_tokens=gen.n_tokens, score=float(score),
                                        value=float(np.mean(gen.values)) if gen.values else None,
                                        logprob=float(np.mean(gen.logprobs)) if gen.logprobs else None,
                                        decision="sampled", reason=f"sample {j} scored by {spec.signal}"))
            return float(score)

        async def test(j: int) -> bool | None:
            """Visible tests of sample j; None when the task has none (nothing is run)."""
            if not task["visible_tests"]:
                return None
            results = await run_visible_tests(sandbox, task, samples[j]["code"])
            passed = sum(c["passed"] for c in results)
            used["test_runs"] += 1
            tests.append(TestRun(attempt=j, passed=passed, total=len(results), cases=results))
            for c in candidates:
                if c["attempt"] == j:
                    c["visible_passed"], c["visible_total"] = passed, len(results)
            return passed == len(results)

        chosen, reason = await _decide(spec, params, request, add, test, backend)
        log = [{"temperature": SAMPLED.temperature, "top_p": SAMPLED.top_p, "steer": 0.0,
                "seed": seed * SEED_STRIDE + j} for j in sorted(samples)]
        if chosen is None:  # every sample was abandoned: nothing to submit
            trace.append(record_reading(state, trace, kind="tests", decision="stop", reason=reason))
            return {"used": used, "trace": trace, "tests": tests, "candidates": candidates, "code": "",
                    "completion": "", "stop_reason": f"stop: {reason}", "final_values": [], "final_logprobs": [],
                    "sampling_log": log}
        out = samples[chosen]
        trace.append(record_reading(state, trace, kind="tests", decision="accept", reason=reason,
                                    score=out["score"]))
        gen: Generation = out["gen"]
        return {
            "used": used, "trace": trace, "tests": tests, "candidates": candidates,
            "code": out["code"], "completion": completion_for(out["code"], task["entry_point"]),
            "stop_reason": f"accept: {reason}", "final_values": [round(v, 6) for v in gen.values],
            "final_logprobs": [round(v, 6) for v in gen.logprobs], "prompt_tokens": gen.prompt_tokens,
            "sampling_log": log,
        }

    return search


async def _decide(spec: SearchSpec, params: Mapping[str, Any], request: Any, add: Any, test: Any,
                  backend: ValueBackend) -> tuple[int | None, str]:
    """Drive the policy's rule (:mod:`valueagent.search_rules`, the one a replay drives on a bank) with the
    model and the sandbox; returns the chosen sample and why."""
    n = int(params.get("samples", spec.samples))  # a calibration made on a bank of N samples ranks N
    if spec.action == "rank":
        rule = rules.rank(n, spec.signal)
    elif spec.action == "seq":  # a threshold of None never fires
        rule = rules.seq(n, spec.signal, accept=params["accept"], discard=params["discard"])
    else:  # stop: each sample aborts inside the decode loop when its window falls to the threshold
        rule = rules.stop(n, spec.signal)
    answer: Any = None
    while True:
        try:
            req = rule.send(answer)
        except StopIteration as done:
            choice: rules.Choice = done.value
            return choice.index, choice.reason
        if req[0] == "draw":
            js = req[1]
            gens = await asyncio.gather(*(backend.generate(request(j)) for j in js))  # one batch
            answer = [rules.Drawn(score=add(j, gen), tokens=gen.n_tokens, aborted=gen.finish_reason == "abort")
                      for j, gen in zip(js, gens, strict=True)]
        else:
            answer = await test(req[1])


def build_search_graph(backend: ValueBackend, settings: AgentSettings, sandbox: SandboxProvider) -> Any:
    """prepare -> search -> END: a whole-answer search policy's topology."""
    graph = StateGraph(AgentState, input_schema=AgentInput, output_schema=AgentOutput)
    graph.add_node("prepare", make_prepare_node(settings))
    graph.add_node("search", make_search_node(backend, settings, sandbox))
    graph.add_edge(START, "prepare")
    graph.add_edge("prepare", "search")
    graph.add_edge("search", END)
    return graph


def search_policy(name: str, action: Action, signal: str, description: str,
                  controls: tuple[str, ...] | None = None) -> PolicySpec:
    """A whole-answer search policy: ``action`` on the registered ``signal``; ``controls``: the policies it is
    paired with at matched cost (None: the random and log-prob signals on the same action)."""
    if controls is None:
        controls = tuple(c for c in (f"random-{action}", f"logprob-{action}") if c != name)
    return PolicySpec(name=name, signal="none", tests="never", segmented=False, description=description,
                      topology=build_search_graph, search=SearchSpec(action=action, signal=signal),
                      controls=controls)


_RANK = {"value": "the value reading", "logprob": "mean log-probability",
         "confidence": "DeepConf's lowest windowed confidence", "probe": "a probe trained on own attempts",
         "random": "a random order (control)", "value+logprob": "value and log-prob, fitted jointly",
         "order": "sample order (control)"}
SEARCH_POLICIES: Sequence[PolicySpec] = (
    *(search_policy(f"{s}-rank", "rank", s, f"best of 8 fresh samples by {d}, visible tests in that order",
                    controls=None if s == "value" else ())
      for s, d in _RANK.items()),
    search_policy("value-seq", "seq", "value", "after each sample: accept untested, test, or discard, by value",
                  controls=("logprob-seq",)),
    search_policy("logprob-seq", "seq", "logprob", "after each sample: accept untested, test, or discard, by "
                  "mean log-prob", controls=()),
    search_policy("value-stop", "stop", "value", "fresh samples in order, each abandoned when its windowed value "
                  "falls to the threshold; finished ones tested", controls=("confidence-stop",)),
    search_policy("confidence-stop", "stop", "confidence", "fresh samples in order, each abandoned when its "
                  "DeepConf window confidence falls to the threshold; finished ones tested", controls=()),
)
for _spec in SEARCH_POLICIES:
    register_policy(_spec)
