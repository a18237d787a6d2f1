"""Request/result types of a value-reading backend and the Protocol other backends implement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from valueagent.signals import WINDOW

Message = dict[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": str}``."""

FinishReason = Literal["stop", "length", "eos", "abort", "cancelled"]
AbortTrace = Literal["value", "confidence"]
ABORT_WINDOW = WINDOW
"""Tokens averaged by an ``abort_below`` rule: the window of ``valueagent.signals`` (defined once, there)."""


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    """One generation. Give ``messages`` (chat template applied) or ``prompt`` (raw text), not both.

    ``assistant_prefix`` is text the assistant turn already contains (used to resume a trajectory
    after a backtrack): it is appended after the chat template's generation prompt and is not part
    of the returned text. ``steer`` is the steering strength as a fraction of the mean residual
    norm at the axis layer (the paper's unit: +0.168 = +16.8%); 0 means no steering.
    Sampling: ``temperature == 0`` is greedy; otherwise nucleus sampling with ``top_p``, seeded by
    ``seed`` per request so results do not depend on what else shares the batch (fp32).
    ``exclude_first``: token ids the first generated token must not be (a branch that may not repeat the
    token it replaces). ``hidden_mean``: also return the mean residual at the axis layer over the
    generated tokens (the input of a supervised probe). ``abort_below``: ``(trace, threshold)`` ends the
    generation (finish reason ``abort``) at the first token where the mean of the last ``ABORT_WINDOW``
    readings of ``trace`` (``value``, or DeepConf's token ``confidence``) is <= ``threshold``: an early stop
    decided inside the decode loop, so no token is spent after it.
    """

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    assistant_prefix: str = ""
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    steer: float = 0.0
    steer_generated_only: bool = True
    ignore_eos: bool = False
    exclude_first: tuple[int, ...] = ()
    hidden_mean: bool = False
    abort_below: tuple[AbortTrace, float] | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of `messages` (a chat) or `prompt` (raw text)")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")


@dataclass(frozen=True, kw_only=True)
class Generation:
    """What came out: text, token ids, and per generated token its log-probability and value.

    ``values[i]`` is the cosine between the residual stream at the axis layer at generated token
    ``i``'s own position and the axis direction, read by a hook during the generating forward passes
    (before any steering is added at that layer). Empty when no axis is loaded.
    ``logprobs[i]`` is the model's log-probability of token ``i`` (temperature 1, unsteered
    sampling distribution aside). ``cached_prompt_tokens`` of the ``prompt_tokens`` were not recomputed:
    their keys and values came from an earlier request that shared that prefix. ``entropies[i]`` and
    ``top_logprobs[i]`` (the k largest log-probabilities, k = ``decoding.TOP_K``) describe the distribution
    token ``i`` was drawn from, at temperature 1.
    """

    text: str
    token_ids: list[int]
    logprobs: list[float]
    values: list[float]
    layer: int | None
    prompt_tokens: int
    finish_reason: FinishReason
    steer: float = 0.0
    tokens: list[str] = field(default_factory=list)
    cached_prompt_tokens: int = 0
    entropies: list[float] = field(default_factory=list)
    top_logprobs: list[list[float]] = field(default_factory=list)
    hidden_mean: list[float] | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True, kw_only=True)
class TokenEvent:
    """One generated token as it comes out (``generate(..., on_token=...)``): ``text`` is what it adds to
    the output (empty while a multi-byte character is incomplete; a later token carries it, so the texts
    join to the generation's text), ``value`` its reading (None without an axis)."""

    index: int
    token_id: int
    text: str
    logprob: float
    value: float | None


TokenCallback = Callable[[TokenEvent], None]
"""Called from the decoding thread, once per generated token: keep it short and thread-safe."""


@dataclass(frozen=True, kw_only=True)
class Scored:
    """A teacher-forced reading of a given completion: per-token values and log-probabilities."""

    values: list[float]
    logprobs: list[float]
    token_ids: list[int]
    layer: int | None


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What a backend runs and what it can do.

    ``dtype`` is the arithmetic (``"float32"`` on a CPU); ``weights`` is the precision the weights carry as
    loaded, which can be less: the embedded models are a Q4_K_M GGUF dequantized at load, so they compute in
    float32 on Q4_K_M weights. The capabilities: ``has_axis`` (a value axis is loaded), ``per_token_values``
    (generations carry one value per token), ``steering`` (requests may steer along the axis). A policy that
    reads or steers along the value refuses to start on a backend without an axis.
    """

    model_id: str
    revision: str | None
    num_layers: int
    hidden_size: int
    dtype: str
    device: str
    axis: str | None
    axis_layer: int | None
    quantization: str | None = None  # "int8": decoding through int8 linear layers (valueagent.runtime.quant)
    axis_sha256: str | None = None  # the axis artifact's content hash: what a gate calibration is tied to
    weights: str | None = None  # e.g. "Q4_K_M GGUF, dequantized at load", "bfloat16"; None: not known
    has_axis: bool = False
    per_token_values: bool = False
    steering: bool = False
    backend: str = "transformers"  # the engine that runs the model: "transformers" or "llama.cpp"


def precision_label(dtype: object, quantization: object, backend: object = None) -> str:
    """How a run computed, for reports: ``float32 arithmetic, int8 decoding``, ``llama.cpp (GGUF kernels)``."""
    if backend == "llama.cpp":
        return "llama.cpp GGUF kernels (float32 activations, quantized dot products)"
    return f"{dtype} arithmetic" + (", int8 decoding" if quantization == "int8" else "")


@runtime_checkable
class ValueBackend(Protocol):
    """A model that generates while reading its value axis. Safe to call from many coroutines."""

    def info(self) -> ModelInfo: ...

    async def generate(self, request: GenerationRequest) -> Generation: ...

    async def score(self, messages: tuple[Message, ...], completion: str) -> Scored: ...

    async def aclose(self) -> None: ...
