"""Reasoning traces with and without backtracking (math, code tracing, age puzzles), seeded.

Each group has one problem and three traces that agree up to one step ``k``:

- ``clean``: step ``k`` is right and the trace continues to the right answer;
- ``backtrack``: step ``k`` is wrong, then "Wait, that's wrong: ..." corrects it and the trace
  continues to the right answer;
- ``uncorrected``: step ``k`` is wrong and the error propagates to a wrong answer.

``pivot`` is the character offset where the backtracking sentence starts (``backtrack``) or would
start (the other two: right after step ``k``), so the window before it can be read; ``step_span`` is
step ``k``'s sentence.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

__all__ = ["BacktrackTrace", "TraceVariant", "generate_backtracking"]

TraceVariant = Literal["clean", "backtrack", "uncorrected"]
Span = tuple[int, int]

_WAIT = (
    "Wait, that's wrong:", "Wait, I made a mistake:", "Hold on, that is not right:",
    "Hmm, wait, let me recheck:", "Actually, that's incorrect:", "Wait, I miscalculated:",
)
_NAMES = ("Ann", "Ben", "Cal", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kit", "Lou")


@dataclass(frozen=True)
class BacktrackTrace:
    """One trace; ``prompt`` is the user turn and ``completion`` the assistant's reasoning."""

    id: str
    group_id: str
    domain: str
    variant: TraceVariant
    prompt: str
    completion: str
    pivot: int
    step_span: Span
    answer_correct: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


class Step(NamedTuple):
    """One reasoning step: its sentence (given the value it states and the previous value), the true
    value from the previous one, and the arithmetic it does (``None``: nothing to get wrong)."""

    say: Callable[[int, int], str]
    value: Callable[[int], int]
    expr: Callable[[int], str] | None


def _wrong(rng: random.Random, true: int) -> int:
    return true + rng.choice((-10, -2, -1, 1, 2, 10)) if true > 10 else true + rng.choice((1, 2, 3))


def _render(
    intro: str, steps: list[Step], outro: Callable[[int], str], start: int, k: int, wrong: int | None,
    fix: str | None, propagate: bool,
) -> tuple[str, int, Span]:
    parts = [intro] if intro else []
    prev = start
    pivot, span = 0, (0, 0)
    for i, (say, value_of, _) in enumerate(steps):
        true = value_of(prev)
        shown = wrong if (i == k and wrong is not None) else true
        sentence = say(shown, prev)
        text_so_far = " ".join(parts)
        begin = len(text_so_far) + (1 if parts else 0)
        parts.append(sentence)
        if i == k:
            span = (begin, begin + len(sentence))
            pivot = span[1] + 1
            if fix is not None:
                parts.append(fix)
        prev = shown if propagate else true
    parts.append(outro(prev))
    return " ".join(parts), pivot, span


def _math(rng: random.Random) -> tuple[str, str, list[Step], Callable[[int], str], int]:
    a, b, c, d = rng.randint(12, 49), rng.randint(3, 19), rng.randint(10, 99), rng.randint(5, 60)
    steps: list[Step] = [
        Step(lambda v, p: f"First, {a} × {b} = {v}.", lambda p: a * b, lambda p: f"{a} × {b}"),
        Step(lambda v, p: f"Then {p} + {c} = {v}.", lambda p: p + c, lambda p: f"{p} + {c}"),
        Step(lambda v, p: f"Next, {p} - {d} = {v}.", lambda p: p - d, lambda p: f"{p} - {d}"),
    ]
    prompt = f"Compute {a} × {b} + {c} - {d}. Show your steps."
    return "math", prompt, steps, lambda r: f"So the answer is {r}.", 0


def _add_step(x: int, why: str) -> Step:
    return Step(lambda v, p: f"{x} {why}, so total becomes {p} + {x} = {v}.", lambda p: p + x,
                lambda p: f"{p} + {x}")


def _skip_step(x: int, why_not: str) -> Step:
    return Step(lambda v, p: f"{x} {why_not}, so total stays {v}.", lambda p: p, None)


def _code(rng: random.Random) -> tuple[str, str, list[Step], Callable[[int], str], int]:
    kind = rng.choice(("odd", "big"))
    limit = rng.randint(5, 12)
    cond = "x % 2 == 1" if kind == "odd" else f"x > {limit}"

    def keep(x: int) -> bool:
        return x % 2 == 1 if kind == "odd" else x > limit

    xs: list[int] = []
    while sum(keep(x) for x in xs) < 2:
        xs = [rng.randint(1, 20) for _ in range(rng.randint(4, 6))]
    why = "is odd" if kind == "odd" else f"is greater than {limit}"
    why_not = "is even" if kind == "odd" else f"is not greater than {limit}"
    steps = [_add_step(x, why) if keep(x) else _skip_step(x, why_not) for x in xs]
    prompt = (
        "What does this function return for xs = " + str(xs) + "?\n\n```python\ndef f(xs):\n"
        f"    total = 0\n    for x in xs:\n        if {cond}:\n            total += x\n    return total\n```"
    )
    return "code", prompt, steps, lambda r: f"The function returns {r}.", 0


def _puzzle(rng: random.Random) -> tuple[str, str, list[Step], Callable[[int], str], int]:
    n1, n2, n3, n4 = rng.sample(_NAMES, 4)
    base, times, older, younger = rng.randint(3, 9), rng.randint(2, 4), rng.randint(2, 9), rng.randint(1, 5)
    steps: list[Step] = [
        Step(lambda v, p: f"{n2} is {times} times as old as {n1}, so {n2} is {times} × {p} = {v}.",
             lambda p: p * times, lambda p: f"{times} × {p}"),
        Step(lambda v, p: f"{n3} is {older} years older than {n2}, so {n3} is {p} + {older} = {v}.",
             lambda p: p + older, lambda p: f"{p} + {older}"),
        Step(lambda v, p: f"{n4} is {younger} years younger than {n3}, so {n4} is {p} - {younger} = {v}.",
             lambda p: p - younger, lambda p: f"{p} - {younger}"),
    ]
    prompt = (
        f"{n1} is {base}. {n2} is {times} times as old as {n1}. {n3} is {older} years older than {n2}. "
        f"{n4} is {younger} years younger than {n3}. How old is {n4}?"
    )
    return "puzzle", prompt, steps, lambda r: f"So {n4} is {r}.", base


def _group(gid: str, maker: Callable[..., Any], rng: random.Random) -> list[BacktrackTrace]:
    domain, prompt, steps, outro, start = maker(rng)
    live = [i for i, step in enumerate(steps) if step.expr is not None]
    k = rng.choice(live[:-1])
    prev = start
    for i in range(k):
        prev = steps[i].value(prev)
    true = steps[k].value(prev)
    wrong = _wrong(rng, true)
    expr = steps[k].expr
    assert expr is not None
    fix = f"{rng.choice(_WAIT)} {expr(prev)} is {true}, not {wrong}."
    intro = "Let me work through this step by step." if domain != "code" else "Start with total = 0."
    out = []
    plan: tuple[tuple[TraceVariant, int | None, str | None, bool], ...] = (
        ("clean", None, None, False), ("backtrack", wrong, fix, False), ("uncorrected", wrong, None, True)
    )
    for variant, w, f, prop in plan:
        text, pivot, span = _render(intro, steps, outro, start, k, w, f, prop)
        out.append(BacktrackTrace(
            id=f"{gid}-{variant}", group_id=gid, domain=domain, variant=variant,
            prompt=prompt, completion=text, pivot=pivot, step_span=span, answer_correct=variant != "uncorrected",
        ))
    return out


def generate_backtracking(seed: int = 0, *, per_domain: int = 60) -> list[BacktrackTrace]:
    """``per_domain`` groups (3 traces each) for math, code tracing and puzzles, deterministic in ``seed``."""
    out: list[BacktrackTrace] = []
    for name, maker in (("math", _math), ("code", _code), ("puzzle", _puzzle)):
        for i in range(per_domain):
            out.extend(_group(f"bt-{name}-{i}", maker, random.Random(f"backtrack:{seed}:{name}:{i}")))
    return out
