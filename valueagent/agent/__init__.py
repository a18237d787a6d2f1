"""The value-gated LangGraph coding agent, its baselines, and the pieces to embed in other graphs.

Build: :func:`create_value_agent` (an uncompiled ``StateGraph``; the backend is bound at build time).
Embed: :func:`make_gate_node` with :func:`route_gate` (pure, returns node names) over :class:`AgentState`;
:class:`ValueCritic` with :func:`make_critic_node` / :func:`route_critic` to gate text another model wrote.
Stream: nodes emit ``valueagent/value`` custom events (``stream_mode="custom"``, ``subgraphs=True`` nested).
"""

from __future__ import annotations

from valueagent.agent.calibrate import calibrate, load_gate_configs, samples_from_records, save_calibration
from valueagent.agent.checks import make_finalize_node, make_revise_node, make_run_tests_node
from valueagent.agent.critic import CriticReading, CriticState, ValueCritic, make_critic_node, route_critic
from valueagent.agent.factory import agent_settings, create_value_agent
from valueagent.agent.gate import GateConfig, make_gate, random_gate, threshold_gate
from valueagent.agent.lazy import LazyBackend, lazy_graph
from valueagent.agent.nodes import (
    make_backtrack_node,
    make_gate_node,
    make_generate_node,
    make_prepare_node,
    route_gate,
    route_tests,
)
from valueagent.agent.policies import POLICIES, POLICY_NAMES, PolicyName, PolicySpec, policy_spec
from valueagent.agent.prompts import PromptConfig, extract_code
from valueagent.agent.settings import EVENT, AgentSettings
from valueagent.agent.state import AgentInput, AgentOutput, AgentState, Budgets, Reading, agent_input

__all__ = [
    "EVENT",
    "POLICIES",
    "POLICY_NAMES",
    "AgentInput",
    "AgentOutput",
    "AgentSettings",
    "AgentState",
    "Budgets",
    "CriticReading",
    "CriticState",
    "GateConfig",
    "LazyBackend",
    "PolicyName",
    "PolicySpec",
    "PromptConfig",
    "Reading",
    "ValueCritic",
    "agent_input",
    "agent_settings",
    "calibrate",
    "create_value_agent",
    "extract_code",
    "lazy_graph",
    "load_gate_configs",
    "make_backtrack_node",
    "make_critic_node",
    "make_finalize_node",
    "make_gate",
    "make_gate_node",
    "make_generate_node",
    "make_prepare_node",
    "make_revise_node",
    "make_run_tests_node",
    "policy_spec",
    "random_gate",
    "route_critic",
    "route_gate",
    "route_tests",
    "samples_from_records",
    "save_calibration",
    "threshold_gate",
]
