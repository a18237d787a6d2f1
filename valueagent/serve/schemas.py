"""Pydantic bodies of the server's routes. Requests forbid unknown fields and take JSON types strictly
(``"5"`` is not an integer), so a typo is an error that names the field, never a silent default."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from valueagent.runtime.generation import GenerationRequest

STEER_LIMIT = 1.0  # |steer| beyond a full residual norm only breaks generation (FACTS: |alpha| > ~23%)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ChatMessage(Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class _GenerateFields(Strict):
    """``POST /v1/generate``: the fields of :class:`~valueagent.runtime.generation.GenerationRequest` (fields it gains
    later are added by :func:`_with_request_fields`) plus ``model`` and ``stream``."""

    model: str | None = Field(None, description="Model id or alias; omitted: the served model.")
    stream: bool = Field(False, description="Server-sent events, one per generated token.")
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    assistant_prefix: str = ""
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=100.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0, lt=2**63)
    stop: list[str] = Field(default_factory=list, max_length=16)
    steer: float = Field(0.0, ge=-STEER_LIMIT, le=STEER_LIMIT)
    steer_generated_only: bool = True
    ignore_eos: bool = False


def _json_type(tp: Any) -> Any:
    """``tp`` with ``tuple[X, ...]`` read as ``list[X]``: strict JSON has arrays, never tuples."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return list[_json_type(args[0])]  # type: ignore[misc]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_json_type(a) for a in args)]  # noqa: UP007
    return tp


def _with_request_fields(base: type[Strict]) -> type[Strict]:
    """``base`` plus every field of GenerationRequest it does not declare, typed as the dataclass types it
    (tuples as lists; :func:`valueagent.runtime.wire.from_json` turns them back)."""
    hints = {k: _json_type(v) for k, v in typing.get_type_hints(GenerationRequest).items()}
    extra: dict[str, Any] = {}
    for f in dataclasses.fields(GenerationRequest):
        if f.name in base.model_fields:
            continue
        if isinstance(f.default, tuple):
            extra[f.name] = (hints[f.name], Field(default_factory=lambda d=f.default: list(d)))
        elif f.default is not dataclasses.MISSING:
            extra[f.name] = (hints[f.name], f.default)
        elif f.default_factory is not dataclasses.MISSING:
            extra[f.name] = (hints[f.name], Field(default_factory=f.default_factory))
        else:
            extra[f.name] = (hints[f.name], ...)
    if not extra:
        return base
    return typing.cast(type[Strict], create_model("GenerateBody", __base__=base, **extra))


if typing.TYPE_CHECKING:
    GenerateBody = _GenerateFields
else:
    GenerateBody = _with_request_fields(_GenerateFields)


class ScoreBody(Strict):
    """``POST /v1/score``: a teacher-forced reading of ``completion`` after the chat ``messages``."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    completion: str = Field(min_length=1)


# -- OpenAI chat completions --------------------------------------------------------------------------
class TextPart(Strict):
    type: Literal["text"]
    text: str


class ChatInMessage(Strict):
    """An OpenAI chat message (text only); ``developer`` is read as ``system``."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def plain(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(Strict):
    include_usage: bool = False


class ChatBody(Strict):
    """``POST /v1/chat/completions``, OpenAI's fields (those that have a meaning here) plus ``steer``."""

    model: str
    messages: list[ChatInMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, lt=2**63)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="One choice per request.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    user: str | None = None
    steer: float = Field(0.0, ge=-STEER_LIMIT, le=STEER_LIMIT, description="valueagent: steering fraction.")

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, v: float) -> float:
        if v != 0:
            raise ValueError("penalties are not supported by this server: leave them at 0")
        return v


# -- responses (extra fields allowed: fields the backend's dataclasses gain pass through) -------------
class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class GenerationOut(Open):
    """A :class:`~valueagent.runtime.generation.Generation`: ``tokens``, ``token_ids``, ``values``, ``logprobs``
    (and ``entropies`` where the backend reads them) hold one entry per generated token."""

    text: str
    token_ids: list[int]
    tokens: list[str]
    values: list[float]
    logprobs: list[float]
    layer: int | None
    prompt_tokens: int
    finish_reason: str
    steer: float


class ScoredOut(Open):
    values: list[float]
    logprobs: list[float]
    token_ids: list[int]
    layer: int | None


class AssistantMessage(Open):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(Open):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: dict[str, Any] | None = None


class Usage(Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(Open):
    """OpenAI's chat completion plus ``valueagent``: the generation's per-token trace (``values``,
    ``tokens``, ``logprobs``, ...), its ``seed`` and the ``axis`` it was read on."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    valueagent: dict[str, Any]


class ModelCard(Open):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "valueagent"
    valueagent: dict[str, Any]


class ModelList(Open):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(Open):
    status: Literal["ok"]
    model: str
    in_flight: int
