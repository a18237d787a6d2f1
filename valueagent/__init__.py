"""valueagent: read a model's value axis during generation, steer along it, and gate a coding agent on it.

Nothing heavy happens at import: the names below resolve on first access (PEP 562), so
``import valueagent`` does not import torch, transformers or langgraph.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # model backend
    "load_model": "valueagent.runtime.loading",
    "render_chat": "valueagent.runtime.loading",
    "load_backend": "valueagent.runtime.backend",
    "HFBackend": "valueagent.runtime.backend",
    "HTTPBackend": "valueagent.runtime.http",
    "steer_alpha": "valueagent.runtime.backend",
    "GenerationRequest": "valueagent.runtime.generation",
    "Generation": "valueagent.runtime.generation",
    "Scored": "valueagent.runtime.generation",
    "ValueBackend": "valueagent.runtime.generation",
    "AxisHook": "valueagent.runtime.hooks",
    "steering": "valueagent.runtime.hooks",
    # value axis artifact
    "ValueAxis": "valueagent.runtime.artifact",
    "load_axis": "valueagent.runtime.artifact",
    "save_axis": "valueagent.runtime.artifact",
    "AxisMismatchError": "valueagent.runtime.artifact",
    # tasks and sandbox
    "Task": "valueagent.tasks",
    "PublicTask": "valueagent.tasks",
    "VisibleTest": "valueagent.tasks",
    "load_jsonl": "valueagent.tasks",
    "load_humaneval": "valueagent.tasks",
    "humaneval_split": "valueagent.tasks",
    "load_mbpp": "valueagent.mbpp",
    "mbpp_split": "valueagent.mbpp",
    "BENCHMARKS": "valueagent.benchmarks",
    # signals and policies of your own
    "SignalSpec": "valueagent.signals",
    "register_signal": "valueagent.signals",
    "signal_spec": "valueagent.signals",
    "PolicySpec": "valueagent.agent.policies",
    "register_policy": "valueagent.agent.policies",
    "search_policy": "valueagent.agent.search",
    "Sandbox": "valueagent.sandbox",
    "ExecResult": "valueagent.sandbox",
    # agent
    "create_value_agent": "valueagent.agent",
    "make_gate_node": "valueagent.agent",
    "route_gate": "valueagent.agent",
    "AgentState": "valueagent.agent",
    "Budgets": "valueagent.agent",
    "GateConfig": "valueagent.agent",
    "ValueCritic": "valueagent.agent",
    "POLICY_NAMES": "valueagent.agent",
    "run_tasks": "valueagent.runner",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'valueagent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
