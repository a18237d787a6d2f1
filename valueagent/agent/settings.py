"""Build-time settings of an agent graph, and the stream-event helper its nodes share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from valueagent.agent.gate import GateConfig
from valueagent.agent.policies import PolicySpec
from valueagent.agent.prompts import PromptConfig
from valueagent.agent.state import Budgets

EVENT = "valueagent/value"
"""The name of the custom stream events (``stream_mode="custom"``; add ``subgraphs=True`` when nested)."""


@dataclass(frozen=True, kw_only=True)
class AgentSettings:
    """Everything the nodes need besides the backend and sandbox (which are bound, never in state)."""

    policy: PolicySpec
    gate: GateConfig
    budgets: Budgets = field(default_factory=Budgets)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    segment_tokens: int = 32
    answer_tokens: int = 512

    def __post_init__(self) -> None:
        if self.segment_tokens < 1 or self.answer_tokens < 1:
            raise ValueError("segment_tokens and answer_tokens must be >= 1")

    @property
    def call_tokens(self) -> int:
        """Tokens per generate call: a segment for gated policies, a whole answer otherwise."""
        return self.segment_tokens if self.policy.segmented else self.answer_tokens

    def describe(self) -> dict[str, Any]:
        """A JSON record of the settings (saved with every result)."""
        return {
            "policy": self.policy.name,
            "sampling": self.policy.sampling_settings(),
            "gate": self.gate.to_dict(),
            "budgets": dict(self.budgets.as_dict()),
            "segment_tokens": self.call_tokens,
            "answer_tokens": self.answer_tokens,
            "prefill": self.prompt.prefill,
            "stop": list(self.prompt.stop),
        }


def emit(payload: dict[str, Any]) -> None:
    """Send a ``valueagent/value`` custom stream event; a no-op outside a running graph."""
    try:
        from langgraph.config import get_stream_writer

        writer = get_stream_writer()
    except (RuntimeError, LookupError):
        return
    writer({"event": EVENT, **payload})
