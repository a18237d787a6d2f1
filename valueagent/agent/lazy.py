"""Graphs that load their model on first use, for ``graphs/`` and the LangGraph CLI (``langgraph.json``).

Nothing is loaded at import: :class:`LazyBackend` loads ``valueagent.runtime.backend.load_backend`` when the graph
first generates. Settings come from the environment: ``VALUEAGENT_MODEL`` (default ``embedded``),
``VALUEAGENT_AXIS`` (default ``default``; ``none`` for no axis) and ``VALUEAGENT_GATE_CONFIG`` (a
calibration file from ``valueagent calibrate``). Without it a gated policy uses the calibration shipped
with the axis it reads, and refuses to build when none ships, unless ``VALUEAGENT_UNCALIBRATED=1`` (it then
never backtracks and always tests).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from valueagent.runtime.generation import Generation, GenerationRequest, Message, ModelInfo, Scored, ValueBackend


class LazyBackend:
    """A :class:`~valueagent.runtime.generation.ValueBackend` that loads the real one on first use."""

    def __init__(self, model: str | None = None, axis: str | None = None) -> None:
        self.model = model or os.environ.get("VALUEAGENT_MODEL", "embedded")
        axis = axis or os.environ.get("VALUEAGENT_AXIS", "default")
        self.axis: str | None = None if axis.lower() == "none" else axis
        self._backend: ValueBackend | None = None
        self._lock = threading.Lock()

    def load(self) -> ValueBackend:
        """The real backend (loaded once, thread-safe)."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    from valueagent.runtime.backend import load_backend

                    self._backend = load_backend(self.model, axis=self.axis)
        return self._backend

    def info(self) -> ModelInfo:
        return self.load().info()

    async def generate(self, request: GenerationRequest) -> Generation:
        backend = await asyncio.to_thread(self.load)
        return await backend.generate(request)

    async def score(self, messages: tuple[Message, ...], completion: str) -> Scored:
        backend = await asyncio.to_thread(self.load)
        return await backend.score(messages, completion)

    async def aclose(self) -> None:
        if self._backend is not None:
            await self._backend.aclose()


_SHARED: dict[str, LazyBackend] = {}


def gate_config_for(policy: str, backend: LazyBackend) -> Any:  # GateConfig | None
    """The thresholds of ``policy`` on ``backend``'s reading: ``VALUEAGENT_GATE_CONFIG``, else the shipped
    calibration of its axis; a ValueError saying how to make one when a gated policy has none."""
    from valueagent.agent.calibrate import load_gate_configs
    from valueagent.agent.policies import policy_spec
    from valueagent.agent.shipped import calibration_for, expected_reading

    path = os.environ.get("VALUEAGENT_GATE_CONFIG")
    if not path:
        if not policy_spec(policy).needs_calibration or os.environ.get("VALUEAGENT_UNCALIBRATED") == "1":
            return None
        reading = expected_reading(backend.model, backend.axis)
        found = calibration_for(reading) if reading is not None else None
        if found is None:
            raise ValueError(f"policy {policy!r} gates on thresholds and no calibration ships for model "
                             f"{backend.model!r} with axis {backend.axis!r}: set VALUEAGENT_GATE_CONFIG to a file "
                             "from `valueagent calibrate`, or VALUEAGENT_UNCALIBRATED=1")
        path = str(found.path)
    configs, _ = load_gate_configs(path)
    return configs.get(policy)


def lazy_graph(policy: str) -> Any:
    """A compiled graph for ``policy`` over a process-wide :class:`LazyBackend` (no weights loaded yet)."""
    from valueagent.agent.factory import create_value_agent

    backend = _SHARED.setdefault("default", LazyBackend())
    return create_value_agent(backend, policy=policy, gate_config=gate_config_for(policy, backend)).compile()


POLICY_KEY = "policy"
"""The key of ``config["configurable"]`` that picks the policy of :func:`configurable_graph`."""


def configurable_graph(default: str = "value") -> Any:
    """One compiled graph for every registered policy, built-in or a plugin's: the policy is picked per run by
    ``config={"configurable": {"policy": NAME}}`` (default ``default``), and its graph is built on first use
    over the shared :class:`LazyBackend`. An unknown policy, or one that cannot run here (no calibration for a
    gated or thresholded policy), fails that run with the reason, not the server."""
    from langchain_core.runnables import RunnableConfig
    from langgraph.graph import END, START, StateGraph

    from valueagent.agent.policies import policy_spec
    from valueagent.agent.state import AgentInput, AgentOutput, AgentState

    built: dict[str, Any] = {}

    async def run(state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        name = str((config.get("configurable") or {}).get(POLICY_KEY, default))
        policy_spec(name)  # an unknown name is an error naming the registered ones
        if name not in built:
            built[name] = await asyncio.to_thread(lazy_graph, name)
        out: dict[str, Any] = await built[name].ainvoke({"task": state["task"], "seed": state.get("seed", 0)})
        return out

    graph = StateGraph(AgentState, input_schema=AgentInput, output_schema=AgentOutput)
    graph.add_node("agent", run)
    graph.add_edge(START, "agent")
    graph.add_edge("agent", END)
    return graph.compile()
