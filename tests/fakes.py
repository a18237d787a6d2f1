"""Deterministic fakes: a scripted ValueBackend and a sandbox that judges programs by a predicate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from valueagent.runtime.generation import Generation, GenerationRequest, Message, ModelInfo, Scored


@dataclass(frozen=True)
class Step:
    """One scripted generation: its text split into ``len(values)`` tokens (default: one per word)."""

    text: str
    values: Sequence[float] | None = None
    logprobs: Sequence[float] | None = None
    finish_reason: str = "length"


def _pieces(text: str, n: int) -> list[str]:
    if n <= 0:
        return []
    size = max(1, -(-len(text) // n))
    parts = [text[i * size : (i + 1) * size] for i in range(n)]
    parts[-1] = text[(n - 1) * size :]
    return parts


class ScriptedBackend:
    """Implements :class:`~valueagent.runtime.generation.ValueBackend` from a script of :class:`Step` s.

    ``script`` is a list (consumed in order; the last step repeats when it runs out) or a function of
    ``(request, call_index)``. ``score_value`` (a number, or a function of the completion) is the value of
    every teacher-forced token. Outputs are cut at ``max_new_tokens`` (finish ``length``). Every request is
    kept in ``requests`` so tests can check what the model saw.
    """

    def __init__(
        self,
        script: Sequence[Step] | Callable[[GenerationRequest, int], Step],
        *,
        score_value: float | Callable[[str], float] = 0.5,
        axis: bool = True,
    ) -> None:
        self.script = script
        self.score_value = score_value
        self.axis = axis
        self.requests: list[GenerationRequest] = []
        self.scored: list[tuple[tuple[Message, ...], str]] = []

    def info(self) -> ModelInfo:
        return ModelInfo(
            model_id="fake/scripted", revision=None, num_layers=2, hidden_size=8, dtype="float32",
            device="cpu", axis="fake" if self.axis else None, axis_layer=1 if self.axis else None,
            weights="float32", has_axis=bool(self.axis), per_token_values=bool(self.axis), steering=bool(self.axis),
        )

    def _step(self, request: GenerationRequest) -> Step:
        i = len(self.requests)
        self.requests.append(request)
        if callable(self.script):
            return self.script(request, i)
        return self.script[min(i, len(self.script) - 1)]

    async def generate(self, request: GenerationRequest) -> Generation:
        step = self._step(request)
        n = len(step.values) if step.values is not None else max(1, len(step.text.split()))
        values = list(step.values) if step.values is not None else [0.5] * n
        logprobs = list(step.logprobs) if step.logprobs is not None else [-0.1] * n
        pieces = _pieces(step.text, n)
        finish = step.finish_reason
        if n > request.max_new_tokens:
            n, finish = request.max_new_tokens, "length"
            pieces, values, logprobs = pieces[:n], values[:n], logprobs[:n]
        return Generation(
            text="".join(pieces), token_ids=list(range(n)), logprobs=logprobs[:n],
            values=values[:n] if self.axis else [], layer=1 if self.axis else None, prompt_tokens=10,
            finish_reason=finish,  # type: ignore[arg-type]
            steer=request.steer, tokens=pieces,
        )

    async def score(self, messages: tuple[Message, ...], completion: str) -> Scored:
        self.scored.append((tuple(messages), completion))
        n = max(1, len(completion.split()))
        value = self.score_value(completion) if callable(self.score_value) else self.score_value
        return Scored(values=[value] * n, logprobs=[-0.2] * n, token_ids=list(range(n)), layer=1)

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class FakeCase:
    call: str
    expected: str
    passed: bool
    got: str | None
    error: str | None


@dataclass(frozen=True)
class FakeExec:
    status: str
    returncode: int = 0
    duration_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    isolation: str = "fake"


@dataclass
class ScriptedSandbox:
    """Passes every case of a program when ``passes(program)`` is true; records all it was given."""

    passes: Callable[[str], bool] = lambda program: "GOOD" in program
    programs: list[str] = field(default_factory=list)
    hidden: list[dict[str, Any]] = field(default_factory=list)

    async def arun_cases(self, solution: str, cases: Sequence[Any]) -> list[FakeCase]:
        self.programs.append(solution)
        ok = self.passes(solution)
        return [FakeCase(c.call, c.expected, ok, None if ok else "None", None) for c in cases]

    def score_humaneval(self, prompt: str, completion: str, test: str, entry_point: str) -> FakeExec:
        self.hidden.append({"prompt": prompt, "completion": completion, "test": test})
        return FakeExec(status="passed" if self.passes(prompt + completion) else "failed")
