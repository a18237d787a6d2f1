"""The agent graph on a scripted backend: each gate decision, budgets, sampling and termination."""

from __future__ import annotations

import pytest

from tests.agent_helpers import GATE, LOW, run_agent, seg
from tests.fakes import ScriptedBackend, ScriptedSandbox, Step
from valueagent.agent import POLICY_NAMES, Budgets, GateConfig


async def test_continue_then_accept_without_tests() -> None:
    backend = ScriptedBackend([seg("def f(x):\n"), seg("    return x + 1\n```", end=True)])
    sandbox = ScriptedSandbox()
    out = await run_agent(backend, sandbox=sandbox)
    assert [(r["kind"], r["decision"]) for r in out["trace"]] == [
        ("segment", "continue"), ("segment", "continue"), ("final", "accept")]
    assert out["used"]["test_runs"] == 0 and sandbox.programs == []
    assert out["code"] == "def f(x):\n    return x + 1\n"
    assert out["completion"].startswith("\ndef f(x):")
    assert out["stop_reason"].startswith("accept")


async def test_low_segment_backtracks_to_last_high_point_and_resamples() -> None:
    backend = ScriptedBackend([
        seg("def f(x):\n"), seg("    return BAD\n", LOW), seg("    return x + 1\n```", end=True)])
    out = await run_agent(backend)
    assert [r["decision"] for r in out["trace"]] == ["continue", "backtrack", "continue", "accept"]
    assert out["used"]["backtracks"] == 1
    first, _, resample = backend.requests
    assert first.temperature == 0.0
    assert resample.assistant_prefix == "```python\ndef f(x):\n"  # BAD segment dropped
    assert resample.temperature == 0.8 and resample.top_p == 0.95 and resample.seed != first.seed
    kinds = [e["kind"] for e in out["transcript"]]
    assert kinds.count("backtrack") == 1 and "BAD" in out["transcript"][kinds.index("backtrack")]["content"]
    assert "BAD" not in out["code"]


async def test_drop_within_trajectory_backtracks() -> None:
    gate = GateConfig(drop_below=-0.2, accept_above=0.0, min_tokens=1)
    backend = ScriptedBackend([seg("a\n", [0.9] * 4), seg("b\n", [0.6] * 4), seg("c\n```", [0.9] * 4, end=True)])
    out = await run_agent(backend, gate=gate)
    seg_reads = [r for r in out["trace"] if r["kind"] == "segment"]
    assert seg_reads[1]["decision"] == "backtrack" and seg_reads[1]["drop"] == pytest.approx(-0.3)


async def test_low_final_runs_tests_then_revises_with_feedback_sampled() -> None:
    from dataclasses import replace

    from valueagent.agent import policy_spec

    backend = ScriptedBackend([seg("def f(x):\n    return x\n```", [0.6] * 4, end=True),
                               seg("def f(x):\n    return x + 1  # GOOD\n```", [0.6] * 4, end=True)])
    sandbox = ScriptedSandbox()
    spec = replace(policy_spec("value"), revise_mode="feedback")
    out = await run_agent(backend, sandbox=sandbox, policy=spec)  # type: ignore[arg-type]
    assert [r["decision"] for r in out["trace"] if r["kind"] != "segment"] == [
        "run_tests", "revise", "run_tests", "accept"]
    assert out["used"] == {"backtracks": 0, "test_runs": 2, "revisions": 1, "tokens": 8}
    revision = backend.requests[1]
    assert revision.temperature == 0.8 and revision.messages is not None
    assert "`f(1)` should be `2`" in revision.messages[-1]["content"]
    assert revision.messages[-2]["role"] == "assistant"
    assert "GOOD" in out["code"] and out["tests"][-1]["passed"] == out["tests"][-1]["total"] == 2


async def test_backtrack_budget_exhausted_continues() -> None:
    backend = ScriptedBackend([seg("a\n"), seg("b\n", LOW), seg("c\n```", end=True)])
    out = await run_agent(backend, budgets=Budgets(backtracks=0))
    low = out["trace"][1]
    assert low["decision"] == "continue" and "backtrack budget exhausted" in low["reason"]
    assert out["used"]["backtracks"] == 0


async def test_test_budget_exhausted_stops_with_best_candidate() -> None:
    backend = ScriptedBackend([seg("def f(x):\n    return 0\n```", [0.6] * 4, end=True)])
    out = await run_agent(backend, budgets=Budgets(test_runs=0))
    final = out["trace"][-1]
    assert final["kind"] == "final" and final["decision"] == "stop" and "test budget" in final["reason"]
    assert out["code"] == "def f(x):\n    return 0\n"


async def test_token_budget_ends_the_attempt() -> None:
    backend = ScriptedBackend([Step("x " * 10, [0.9] * 10)])
    out = await run_agent(backend, budgets=Budgets(tokens=12), policy="single")
    assert out["used"]["tokens"] == 12
    assert backend.requests[-1].max_new_tokens == 2


async def test_revision_budget_exhausted_stops() -> None:
    backend = ScriptedBackend([seg("def f(x):\n    return 0\n```", [0.6] * 4, end=True)])
    out = await run_agent(backend, policy="always-test", budgets=Budgets(revisions=1))
    assert out["used"]["revisions"] == 1 and out["used"]["test_runs"] == 2
    assert out["trace"][-1]["decision"] == "stop" and "revision budget" in out["trace"][-1]["reason"]


async def test_no_visible_tests_accepts() -> None:
    from valueagent.agent import agent_input, create_value_agent
    from valueagent.tasks import PublicTask

    backend = ScriptedBackend([seg("def g():\n    return 1\n```", [0.6] * 4, end=True)])
    graph = create_value_agent(backend, policy="always-test", sandbox=ScriptedSandbox()).compile()
    out = await graph.ainvoke(agent_input(PublicTask("t/x", "def g():\n", "g", ())))
    assert out["trace"][-1]["decision"] == "accept" and "no visible tests" in out["trace"][-1]["reason"]


def _always_bad(request, i):  # noqa: ANN001, ANN202 - a script function
    return Step("def f(x):\n    return None\n", [0.05] * 6, [-3.0] * 6, "length")


@pytest.mark.parametrize("policy", POLICY_NAMES)
async def test_every_policy_terminates_under_tiny_budgets(policy: str) -> None:
    gate = GATE.with_(rates={"backtrack": 1.0, "accept": 0.0}, weights=(0.0, 1.0, 1.0))
    budgets = Budgets(backtracks=1, test_runs=1, revisions=1, tokens=40)
    backend = ScriptedBackend(_always_bad)
    out = await run_agent(backend, policy=policy, sandbox=ScriptedSandbox(lambda p: False), gate=gate,
                          budgets=budgets, segment_tokens=4, answer_tokens=12)
    used = out["used"]
    assert all(used[k] <= budgets.as_dict()[k] for k in used)
    assert out["stop_reason"]
    assert len(backend.requests) <= 40
    steer = {"steer-high": 0.168, "steer-low": -0.168}.get(policy, 0.0)
    assert all(r.steer == steer for r in backend.requests)
    restarts = [r for r in backend.requests[1:] if r.assistant_prefix == "```python\n"]
    assert all(r.temperature > 0 for r in restarts)  # revisions and backtracks sample; greedy repeats
    assert len({r.seed for r in backend.requests}) == len(backend.requests)


async def test_random_gate_is_seeded() -> None:
    gate = GATE.with_(rates={"backtrack": 0.5, "accept": 0.5})
    script = [seg("a\n"), seg("b\n"), seg("c\n"), seg("d\n```", end=True)]
    runs = [await run_agent(ScriptedBackend(script), policy="random-gate", gate=gate, seed=s) for s in (3, 3, 4)]
    first, again, other = ([r["draw"] for r in out["trace"] if r["kind"] != "tests"] for out in runs)
    assert first == again and all(d is not None for d in first)
    assert first != other


async def test_fresh_revisions_resample_the_original_prompt() -> None:
    from valueagent.agent import policy_spec

    spec = policy_spec("always-test")
    assert spec.revise_mode == "fresh"  # the default: see PolicySpec
    backend = ScriptedBackend([seg("def f(x):\n    return 0\n```", end=True),
                               seg("def f(x):\n    return x + 1  # GOOD\n```", end=True)])
    out = await run_agent(backend, policy=spec)  # type: ignore[arg-type]
    first, second = backend.requests
    assert second.messages == first.messages and second.temperature == 0.8
    assert out["used"]["revisions"] == 1 and "GOOD" in out["code"]


async def test_backtrack_that_would_resample_the_same_text_is_skipped_when_asked() -> None:
    """A low segment whose every token had p >= top_p would come back unchanged: with
    ``skip_repeat_backtracks`` the gate continues instead of spending a backtrack on it; an uncertain
    low segment still backtracks."""
    from dataclasses import replace

    certain = Step("    return BAD\n", LOW, [-0.001] * 4)
    uncertain = Step("    return BAD\n", LOW, [-0.001, -0.9, -0.001, -0.001])
    for low, skip, expected in [(certain, True, "continue"), (certain, False, "backtrack"),
                                (uncertain, True, "backtrack")]:
        backend = ScriptedBackend([seg("def f(x):\n"), low, seg("    return x + 1\n```", end=True)])
        out = await run_agent(backend, gate=replace(GATE, skip_repeat_backtracks=skip))
        second = out["trace"][1]
        assert second["decision"] == expected, (skip, second)
        assert ("would repeat the dropped text" in second["reason"]) == (expected == "continue")
        assert out["used"]["backtracks"] == (expected == "backtrack")


def test_resample_repeats_only_when_the_draw_is_certain() -> None:
    from valueagent.agent.nodes import resample_repeats
    from valueagent.agent.policies import SamplingSpec

    def segs(*lps: float) -> list:
        return [{"start": 0, "text": "x", "values": [0.0] * len(lps), "logprobs": list(lps),
                 "finish_reason": "length", "score": None}]

    nucleus = SamplingSpec(temperature=0.8, top_p=0.95)
    assert resample_repeats(segs(-0.01, -0.05), nucleus)  # p >= 0.951 > top_p
    assert not resample_repeats(segs(-0.01, -0.06), nucleus)  # p = 0.942 < top_p: another token may come
    assert not resample_repeats(segs(), nucleus)
    assert not resample_repeats(segs(-0.01), SamplingSpec(temperature=1.5, top_p=0.95))  # flattened
    assert not resample_repeats(segs(-0.01), SamplingSpec(temperature=0.8, top_p=1.0))  # no nucleus cut
    low_cut = SamplingSpec(temperature=0.8, top_p=0.4)
    assert resample_repeats(segs(-0.01), low_cut) and not resample_repeats(segs(-0.8), low_cut)  # p 0.45: not argmax
    greedy = SamplingSpec(temperature=0.0)
    assert resample_repeats(segs(-0.6), greedy) and not resample_repeats(segs(-0.8), greedy)  # p 0.55 / 0.45
