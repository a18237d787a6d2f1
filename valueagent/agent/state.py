"""The agent's graph state: JSON-only, with explicit budgets and every reading recorded as plain values.

Nothing in the state refers to a model, a sandbox or a hidden test: the backend is bound when the graph
is built (see :mod:`valueagent.agent.factory`), and the only task data a graph accepts is the public view
(:meth:`valueagent.tasks.Task.public`) — :func:`public_task_dict` refuses anything carrying a hidden test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict  # pydantic (LangGraph's JSON schemas) refuses typing.TypedDict before 3.12

Decision = Literal["continue", "backtrack", "run_tests", "accept", "revise", "stop"]
"""What was decided: keep writing, resample from the last high point, check with the visible tests,
accept (without tests, or because they passed), revise after failing tests, or stop (a budget ran out)."""

HIDDEN_FIELDS = ("test", "canonical_solution")


class VisibleTestDict(TypedDict):
    call: str
    expected: str
    source: str


class PublicTaskDict(TypedDict):
    task_id: str
    prompt: str
    entry_point: str
    visible_tests: list[VisibleTestDict]


class BudgetDict(TypedDict):
    backtracks: int
    test_runs: int
    revisions: int
    tokens: int


@dataclass(frozen=True, kw_only=True)
class Budgets:
    """Upper bounds for one task; every loop of the graph consumes one of them, so every run terminates.

    ``tokens`` counts generated tokens over all attempts (prompt tokens are not counted).
    """

    backtracks: int = 2
    test_runs: int = 3
    revisions: int = 2
    tokens: int = 2048

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 0:
                raise ValueError(f"budget {name} must be >= 0, got {value}")

    def as_dict(self) -> BudgetDict:
        return BudgetDict(backtracks=self.backtracks, test_runs=self.test_runs, revisions=self.revisions,
                          tokens=self.tokens)


class Sampling(TypedDict):
    temperature: float
    top_p: float
    steer: float


class Segment(TypedDict):
    """A piece of the current attempt's draft with its per-token readings."""

    start: int  # token offset of the segment inside the attempt
    text: str
    values: list[float]
    logprobs: list[float]
    finish_reason: str
    score: float | None  # the gate's score of this segment (None until read)
    entropies: NotRequired[list[float]]  # per token: where a branch may cut
    token_ids: NotRequired[list[int]]
    tokens: NotRequired[list[str]]  # each token's text, so a branch can cut the draft at a token


class Reading(TypedDict):
    """One gate reading and its decision (an entry of ``trace``, also streamed as a custom event)."""

    step: int
    kind: Literal["segment", "final", "tests"]
    attempt: int
    position: int  # tokens of the attempt read so far
    n_tokens: int  # tokens in the span read
    value: float | None  # raw mean cosine with the axis
    value_norm: float | None  # position-normalized mean (see gate.normalize)
    logprob: float | None  # mean token log-probability
    score: float | None  # the policy's score (higher = better)
    drop: float | None  # score minus the best earlier segment score of this attempt
    draw: float | None  # the uniform draw of a random gate
    decision: str
    reason: str


class CaseDict(TypedDict):
    call: str
    expected: str
    passed: bool
    got: str | None
    error: str | None


class TestRun(TypedDict):
    attempt: int
    passed: int
    total: int
    cases: list[CaseDict]


class Candidate(TypedDict):
    """A finished attempt: the extracted code, its gate score and (if tested) its visible-test result."""

    attempt: int
    code: str
    score: float | None
    visible_passed: int | None
    visible_total: int | None
    values: list[float]
    logprobs: list[float]


class TranscriptEntry(TypedDict):
    """A message the model saw (``prompt``/``feedback``), wrote (``segment``), or lost (``backtrack``)."""

    role: str
    content: str
    kind: str
    attempt: int


class AgentInput(TypedDict, total=False):
    """What a graph accepts as input: the public task and an optional per-task seed. Nothing else."""

    task: PublicTaskDict
    seed: int


class AgentOutput(TypedDict, total=False):
    """What a graph returns."""

    task_id: str
    completion: str
    code: str
    stop_reason: str
    used: BudgetDict
    budgets: BudgetDict
    trace: list[Reading]
    transcript: list[TranscriptEntry]
    tests: list[TestRun]
    candidates: list[Candidate]
    sampling_log: list[Sampling]
    prompt_tokens: int
    final_values: list[float]
    final_logprobs: list[float]


class AgentState(AgentOutput, total=False):
    """The full state. Lists are replaced wholesale by nodes (no reducers): the graph is sequential."""

    task: PublicTaskDict
    seed: int
    messages: list[dict[str, str]]  # the conversation of the current attempt (prompt + feedback)
    draft: str  # assistant text of the current attempt (after the prefill)
    segments: list[Segment]
    attempt: int
    calls: int  # generate calls so far; per-call seeds derive from it
    sampling: Sampling  # settings of the current attempt
    done: bool  # the current attempt is complete (closed code block, EOS, or out of room)
    decision: Decision
    last_backtrack: int  # token offset the previous backtrack returned to (-1: none)
    exclude_next: list[int]  # token ids the next generated token must not be (set by a branch)


def public_task_dict(task: Any) -> PublicTaskDict:
    """The JSON form of a public task, from a ``PublicTask`` or a dict of its fields.

    Raises ``ValueError`` when given anything carrying a hidden test (a ``Task`` or a dict with ``test`` /
    ``canonical_solution``): hidden tests must never reach the agent — pass ``task.public()`` instead.
    """
    if isinstance(task, Mapping):
        data: Mapping[str, Any] = task
    elif any(hasattr(task, f) for f in HIDDEN_FIELDS):
        data = {f: "<hidden>" for f in HIDDEN_FIELDS}
    else:
        data = {k: getattr(task, k) for k in ("task_id", "prompt", "entry_point", "visible_tests")}
    extra = set(data) - {"task_id", "prompt", "entry_point", "visible_tests"}
    if extra:
        raise ValueError(
            f"the agent accepts only public task data (task_id, prompt, entry_point, visible_tests); got "
            f"{sorted(extra)} from {type(task).__name__}. Hidden tests must never reach the agent: pass "
            "`task.public()` (a PublicTask) instead of the Task."
        )
    tests = [
        VisibleTestDict(call=str(t["call"]), expected=str(t["expected"]), source=str(t.get("source", "")))
        for t in (_as_mapping(t) for t in data.get("visible_tests", ()))
    ]
    return PublicTaskDict(
        task_id=str(data["task_id"]),
        prompt=str(data["prompt"]),
        entry_point=str(data["entry_point"]),
        visible_tests=tests,
    )


def _as_mapping(test: Any) -> Mapping[str, Any]:
    if isinstance(test, Mapping):
        return test
    return {"call": test.call, "expected": test.expected, "source": getattr(test, "source", "")}


def agent_input(task: Any, *, seed: int = 0) -> AgentInput:
    """Graph input for one task: ``graph.invoke(agent_input(task.public(), seed=...))``."""
    return AgentInput(task=public_task_dict(task), seed=int(seed))
