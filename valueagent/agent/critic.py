"""A value critic: the local model's value reading of text written by anyone (e.g. an API model).

The critic teacher-forces the text under the local model (``backend.score``) and reads the same signals
the agent's gate reads, scored by the same :class:`~valueagent.agent.gate.GateConfig`. Use
:meth:`ValueCritic.ascore` directly, or put :func:`make_critic_node` and :func:`route_critic` in a graph
whose writer is another model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from typing_extensions import TypedDict  # pydantic (LangGraph's JSON schemas) refuses typing.TypedDict before 3.12

from valueagent.agent.gate import GateConfig, scorer, signals_of
from valueagent.agent.settings import emit
from valueagent.runtime.generation import Message, ValueBackend

NEUTRAL_CONTEXT: tuple[Message, ...] = ({"role": "user", "content": ""},)
CriticDecision = Literal["accept", "retry", "exhausted"]


@dataclass(frozen=True, kw_only=True)
class CriticReading:
    """Signals of a scored text (plain floats); ``score`` under the critic's gate config."""

    value: float | None
    value_norm: float | None
    logprob: float | None
    score: float | None
    n_tokens: int
    values: list[float]
    logprobs: list[float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ValueCritic:
    """Scores text under the local model. ``config.signal`` picks the score: ``value`` (position-normalized
    value), ``logprob`` or ``value+logprob``; ``config.accept_above`` is the node's acceptance threshold."""

    def __init__(self, backend: ValueBackend, config: GateConfig | None = None) -> None:
        self.backend = backend
        self.config = config if config is not None else GateConfig(signal="value")
        self._score = scorer(self.config)

    async def ascore(self, text: str, context: Sequence[Message] = ()) -> CriticReading:
        """Read ``text`` as the assistant's reply to ``context`` (a neutral empty user turn by default)."""
        if not text:
            raise ValueError("the critic needs non-empty text to score")
        scored = await self.backend.score(tuple(context) or NEUTRAL_CONTEXT, text)
        sig = signals_of(scored.values, scored.logprobs, 0, self.config)
        return CriticReading(
            value=sig.value, value_norm=sig.value_norm, logprob=sig.logprob, score=self._score(sig),
            n_tokens=sig.n_tokens, values=[float(v) for v in scored.values],
            logprobs=[float(v) for v in scored.logprobs],
        )

    async def ascore_messages(self, messages: Sequence[Message]) -> CriticReading:
        """Read the last message (an assistant turn) of a conversation, the rest as its context."""
        if not messages or messages[-1].get("role") != "assistant":
            raise ValueError("ascore_messages needs a conversation ending in an assistant message")
        return await self.ascore(messages[-1]["content"], messages[:-1])


class CriticState(TypedDict, total=False):
    """Keys the critic node writes; add them to your graph's state (subclass or copy)."""

    critic_trace: list[dict[str, Any]]
    critic_decision: CriticDecision


def make_critic_node(
    critic: ValueCritic,
    *,
    text_key: str = "answer",
    context_key: str | None = "messages",
    max_retries: int = 2,
) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    """A node reading ``state[text_key]`` (and ``state[context_key]`` as context) with the critic.

    Decides ``accept`` when the score reaches ``critic.config.accept_above``, else ``retry`` while fewer
    than ``max_retries`` retries were decided, else ``exhausted``. Appends the reading with its decision to
    ``critic_trace`` (plain floats) and emits it as a ``valueagent/value`` stream event.
    """
    threshold = critic.config.accept_above

    async def critic_node(state: dict[str, Any]) -> dict[str, Any]:
        context = state.get(context_key, ()) if context_key else ()
        reading = await critic.ascore(str(state[text_key]), list(context))
        trace = list(state.get("critic_trace", []))
        retries = sum(r["decision"] == "retry" for r in trace)
        if threshold is not None and reading.score is not None and reading.score >= threshold:
            decision: CriticDecision = "accept"
            reason = f"score {reading.score:.4g} >= {threshold:.4g}"
        elif retries < max_retries:
            decision, reason = "retry", "score below threshold" if threshold is not None else "no threshold"
        else:
            decision, reason = "exhausted", f"{retries} retries spent"
        record = {k: v for k, v in reading.to_dict().items() if k not in ("values", "logprobs")}
        record.update(kind="critic", step=len(trace), decision=decision, reason=reason)
        emit(record)
        return {"critic_trace": [*trace, record], "critic_decision": decision}

    return critic_node


def route_critic(state: dict[str, Any]) -> CriticDecision:
    """Pure router after :func:`make_critic_node`: ``accept`` | ``retry`` | ``exhausted``."""
    decision = state["critic_decision"]
    return decision if decision in ("accept", "retry") else "exhausted"
