"""The search rules, written once: best of N then tests (``rank``), the sequential gate (``seq``) and early stop
(``stop``), each a program over two ports — where samples come from and who judges them.

A rule is a generator. It yields requests and receives their answers:

- ``("draw", (j, ...))``: fresh samples ``j`` (1-based, drawn together); the answer is one :class:`Drawn` each
  (its signal score, the tokens it cost, whether the stop rule abandoned it inside the decode);
- ``("test", j)``: the visible tests of sample ``j``; the answer is True / False, or None when the task has
  no visible tests (nothing was run).

It returns a :class:`Choice`: the submitted sample (None: nothing to submit) and why. A live run drives a rule
with the model and the sandbox (``valueagent.agent.search``); a replay drives the same rule with a bank's
recorded samples and visible verdicts (``valueagent.bank.policies``). Live and replay therefore make the same
choices wherever the samples are the same, by construction.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Choice", "Drawn", "Request", "Rule", "rank", "seq", "stop", "top"]


@dataclass(frozen=True)
class Drawn:
    """One drawn sample as a rule sees it."""

    score: float
    tokens: int
    aborted: bool = False


@dataclass(frozen=True)
class Choice:
    index: int | None
    reason: str


Request = tuple[Literal["draw"], tuple[int, ...]] | tuple[Literal["test"], int]
Rule = Generator[Request, Any, Choice]


def top(scores: Mapping[int, float]) -> int:
    """The sample with the highest score, the earlier sample on ties: the one choice rule of every top-1 and
    rank policy, live, replayed, and in the heads' best-of-N."""
    return min(scores, key=lambda j: (-scores[j], j))


def _best(drawn: dict[int, Drawn]) -> int:
    return top({j: d.score for j, d in drawn.items()})


def _ranked(drawn: dict[int, Drawn]) -> list[int]:
    return sorted(drawn, key=lambda j: (-drawn[j].score, j))


def _draw(js: Sequence[int]) -> Generator[Request, Any, dict[int, Drawn]]:
    answers = yield ("draw", tuple(js))
    return dict(zip(js, answers, strict=True))


def rank(n: int, signal: str, *, max_tests: int | None = None) -> Rule:
    """N fresh samples at once; the visible tests in signal order until one passes (``max_tests`` at most; 0:
    best of N untested); with no visible tests or none passing, the top-ranked is submitted."""
    drawn = yield from _draw(range(1, n + 1))
    order = _ranked(drawn)
    cap = n if max_tests is None else min(max_tests, n)
    for place, j in enumerate(order[:cap], start=1):
        ok = yield ("test", j)
        if ok is None:
            return Choice(order[0], f"no visible tests: top-ranked of {n} by {signal}")
        if ok:
            return Choice(j, f"visible tests passed (rank {place} of {n} by {signal})")
    if cap == 0:
        return Choice(order[0], f"top-ranked of {n} by {signal}, untested")
    return Choice(order[0], f"no candidate passed the visible tests: top-ranked of {n} by {signal}")


def seq(n: int, signal: str, *, accept: float | None, discard: float | None) -> Rule:
    """After each fresh sample the signal decides: accept untested (``score >= accept``), discard and draw the
    next (``score <= discard``), or run the visible tests. None of N accepted: the top-ranked. A threshold of
    None (or an infinite one) never fires."""
    drawn: dict[int, Drawn] = {}
    for j in range(1, n + 1):
        drawn.update((yield from _draw((j,))))
        s = drawn[j].score
        if accept is not None and s >= accept:
            return Choice(j, f"sample {j} accepted untested ({signal} {s:.3f} >= {accept:.3f})")
        if discard is not None and s <= discard:
            continue
        ok = yield ("test", j)
        if ok is None or ok:
            return Choice(j, f"sample {j} {'has no visible tests' if ok is None else 'passed the visible tests'}")
    return Choice(_best(drawn), f"no sample accepted: top-ranked of {n} by {signal}")


def stop(n: int, signal: str) -> Rule:
    """Fresh samples in order, each abandoned inside its decode when the stop rule fires; a finished one gets
    the visible tests; the first to pass is submitted. None passing: the first finished; none finished:
    nothing to submit."""
    finished: list[int] = []
    for j in range(1, n + 1):
        drawn = yield from _draw((j,))
        if drawn[j].aborted:
            continue
        finished.append(j)
        ok = yield ("test", j)
        if ok is None or ok:
            return Choice(j, f"sample {j} {'has no visible tests' if ok is None else 'passed the visible tests'}")
    if finished:
        return Choice(finished[0], "no finished sample passed the visible tests: the first finished one")
    return Choice(None, f"all {n} samples were abandoned by the {signal} window")
