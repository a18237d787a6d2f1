"""Teacher-forced value readings of given completions under a model and its axis.

The value of a completion is the mean over its tokens of the axis's reading at its layer (``cos(h_t, d)``; for
a head exported as an axis, its linear logit) — exactly what the backends read per token during generation,
averaged (:meth:`~valueagent.runtime.artifact.ValueAxis.span_value`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from valueagent.axis.activations import Span, TextJob, gather
from valueagent.runtime.artifact import ValueAxis
from valueagent.runtime.layers import num_layers


@dataclass(frozen=True)
class Reading:
    """One completion's mean value, token count and mean token log-probability."""

    value: float
    n_tokens: int
    mean_logprob: float


def completion_job(tokenizer: Any, key: str, messages: Sequence[Mapping[str, str]], completion: str) -> TextJob:
    """The chat (generation prompt included) followed by ``completion``; one span over the completion."""
    from valueagent.runtime.loading import render_chat

    head = render_chat(tokenizer, messages)
    return TextJob(key=key, text=head + completion, spans=(Span("completion", len(head), len(head) + len(completion)),))


def check_axis(model: Any, model_id: str, axis: ValueAxis) -> None:
    """Refuse an axis built for another model (raises :class:`AxisMismatchError` with a fix)."""
    axis.check_model(model_id, num_layers(model), int(model.config.hidden_size))


def read_completions(
    model: Any,
    tokenizer: Any,
    model_id: str,
    axis: ValueAxis,
    items: Sequence[tuple[Sequence[Mapping[str, str]], str]],
    *,
    batch_size: int = 4,
    progress: str | None = "scoring",
) -> list[Reading | None]:
    """Read each ``(messages, completion)``; None for a completion with no tokens."""
    check_axis(model, model_id, axis)
    jobs = [completion_job(tokenizer, str(i), m, c) for i, (m, c) in enumerate(items)]
    acts = gather(model, tokenizer, jobs, layers=[axis.layer], batch_size=batch_size, progress=progress)
    out: list[Reading | None] = []
    for a in acts:
        s = a.spans.get("completion")
        out.append(None if s is None else Reading(axis.span_value(s.mean[0], s.mean_unit[0]), s.n_tokens,
                                                  s.mean_logprob))
    return out
