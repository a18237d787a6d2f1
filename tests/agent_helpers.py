"""Shared pieces of the agent tests: a tiny task with a hidden-test sentinel, and graph runners."""

from __future__ import annotations

from typing import Any

from tests.fakes import ScriptedBackend, ScriptedSandbox, Step
from valueagent.agent import Budgets, GateConfig, agent_input, create_value_agent
from valueagent.tasks import Task

SENTINEL = "HIDDEN_SENTINEL_7f3a"
PROMPT = 'def f(x):\n    """Add one.\n    >>> f(1)\n    2\n    >>> f(2)\n    3\n    """\n'
TASK = Task("t/0", PROMPT, "f", f"def check(candidate):\n    assert candidate(5) == 6  # {SENTINEL}\n",
            canonical_solution=f"    return x + 1  # {SENTINEL}\n")
GATE = GateConfig(backtrack_below=0.5, accept_above=0.8, min_tokens=1)

HIGH = [0.9] * 4
LOW = [0.1] * 4


def seg(text: str, values: list[float] | None = None, *, end: bool = False) -> Step:
    return Step(text, values or HIGH, None, "stop" if end else "length")


async def run_agent(
    backend: ScriptedBackend,
    *,
    policy: str = "value",
    sandbox: ScriptedSandbox | None = None,
    gate: GateConfig | None = GATE,
    budgets: Budgets | None = None,
    seed: int = 1,
    **kwargs: Any,
) -> dict[str, Any]:
    graph = create_value_agent(backend, policy=policy, sandbox=sandbox or ScriptedSandbox(), gate_config=gate,
                               budgets=budgets, **kwargs).compile()
    return await graph.ainvoke(agent_input(TASK.public(), seed=seed))


def decisions(out: dict[str, Any], kind: str | None = None) -> list[str]:
    return [r["decision"] for r in out["trace"] if kind is None or r["kind"] == kind]
