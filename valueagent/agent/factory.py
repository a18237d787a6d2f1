"""``create_value_agent``: the agent as an uncompiled ``StateGraph`` with its backend bound at build time."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from langgraph.graph import END, START, StateGraph

from valueagent.agent.checks import (
    CaseRunner,
    SandboxProvider,
    make_finalize_node,
    make_revise_node,
    make_run_tests_node,
)
from valueagent.agent.gate import Gate, GateConfig
from valueagent.agent.nodes import (
    make_backtrack_node,
    make_gate_node,
    make_generate_node,
    make_prepare_node,
    route_gate,
    route_tests,
)
from valueagent.agent.policies import PolicySpec, policy_spec
from valueagent.agent.prompts import PromptConfig
from valueagent.agent.settings import AgentSettings
from valueagent.agent.state import AgentInput, AgentOutput, AgentState, Budgets
from valueagent.runtime.generation import ValueBackend


def agent_settings(
    policy: str | PolicySpec = "value",
    *,
    gate_config: GateConfig | None = None,
    budgets: Budgets | None = None,
    prompt: PromptConfig | None = None,
    segment_tokens: int = 32,
    answer_tokens: int = 512,
    steer: float | None = None,
    gate: Gate | None = None,
) -> AgentSettings:
    """The resolved settings of an agent (what :func:`create_value_agent` builds from its arguments)."""
    spec = policy if isinstance(policy, PolicySpec) else policy_spec(policy)
    if steer is not None:
        spec = replace(spec, steer=float(steer))
    if gate is not None:
        spec = replace(spec, gate=gate)
    config = (gate_config if gate_config is not None else GateConfig()).with_(
        signal=spec.signal, tests=spec.tests, branch=spec.branch)
    return AgentSettings(
        policy=spec,
        gate=config,
        budgets=budgets if budgets is not None else Budgets(),
        prompt=prompt if prompt is not None else PromptConfig(),
        segment_tokens=segment_tokens,
        answer_tokens=answer_tokens,
    )


def sandbox_provider(sandbox: CaseRunner | None) -> SandboxProvider:
    """A coroutine returning ``sandbox``, or a default ``valueagent.sandbox.Sandbox`` made on first use."""
    made: list[CaseRunner] = [] if sandbox is None else [sandbox]
    lock = asyncio.Lock()

    async def provide() -> CaseRunner:
        if not made:
            async with lock:
                if not made:
                    from valueagent.sandbox import Sandbox

                    made.append(Sandbox())
        return made[0]

    return provide


def create_value_agent(
    backend: ValueBackend,
    *,
    policy: str | PolicySpec = "value",
    sandbox: CaseRunner | None = None,
    gate_config: GateConfig | None = None,
    budgets: Budgets | None = None,
    prompt: PromptConfig | None = None,
    segment_tokens: int = 32,
    answer_tokens: int = 512,
    steer: float | None = None,
    gate: Gate | None = None,
) -> StateGraph[Any, Any, Any, Any]:
    """Build the coding agent for ``policy`` as an uncompiled ``StateGraph``.

    ``policy`` is a registered name (:func:`~valueagent.agent.policies.policy_names`) or a
    :class:`~valueagent.agent.policies.PolicySpec`. ``gate`` replaces the gate built from ``gate_config``
    with your own function of a :class:`~valueagent.agent.gate.GateInput` (returning a
    :class:`~valueagent.agent.gate.GateOutcome`) on the gated topology.

    ``backend`` (a :class:`~valueagent.runtime.generation.ValueBackend`) and ``sandbox`` are bound into the nodes
    now and never stored in state, so the graph checkpoints as JSON and can be embedded as a subgraph.
    ``gate_config`` carries calibrated thresholds (``valueagent.agent.calibrate.load_gate_configs``); its
    signal and test mode are forced to the policy's. The graph's input is :class:`AgentInput` (a public
    task and a seed: build it with :func:`~valueagent.agent.state.agent_input`), its output
    :class:`AgentOutput`. Compile with ``.compile(checkpointer=...)`` as usual.
    """
    settings = agent_settings(
        policy, gate_config=gate_config, budgets=budgets, prompt=prompt,
        segment_tokens=segment_tokens, answer_tokens=answer_tokens, steer=steer, gate=gate,
    )
    return build_graph(backend, settings, sandbox_provider(sandbox))


def build_graph(
    backend: ValueBackend, settings: AgentSettings, sandbox: SandboxProvider
) -> StateGraph[Any, Any, Any, Any]:
    """The graph topology for resolved ``settings``: the policy's own, or the shared gated one (see the module
    doc of ``valueagent.agent.nodes``)."""
    if settings.policy.topology is not None:
        graph: StateGraph[Any, Any, Any, Any] = settings.policy.topology(backend, settings, sandbox)
        return graph
    graph = StateGraph(AgentState, input_schema=AgentInput, output_schema=AgentOutput)
    graph.add_node("prepare", make_prepare_node(settings))
    graph.add_node("generate", make_generate_node(backend, settings))
    graph.add_node("gate", make_gate_node(settings))
    graph.add_node("backtrack", make_backtrack_node(settings))
    graph.add_node("run_tests", make_run_tests_node(sandbox, settings))
    graph.add_node("revise", make_revise_node(settings))
    graph.add_node("finalize", make_finalize_node(settings))
    graph.add_edge(START, "prepare")
    graph.add_edge("prepare", "generate")
    graph.add_edge("generate", "gate")
    graph.add_conditional_edges("gate", route_gate, ["generate", "backtrack", "run_tests", "finalize"])
    graph.add_edge("backtrack", "generate")
    graph.add_conditional_edges("run_tests", route_tests, ["revise", "finalize"])
    graph.add_edge("revise", "generate")
    graph.add_edge("finalize", END)
    return graph
