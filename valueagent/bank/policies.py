"""Whole-answer policies replayed from a bank: each turns one task's samples into ``(passed, tokens, test
runs)`` exactly as a live run on the same seeds would, given the signal scores of the samples. The search
policies (rank, best of N, sequential gate, early stop) are not written here: :func:`drive` runs the rules of
:mod:`valueagent.search_rules`, the programs the live policies run, on the bank's samples and verdicts.

Sample 0 of a task is the greedy answer, samples 1..N the fresh ones, drawn in index order. A visible-test
run on a task without visible tests tells nothing: it is not run and the candidate counts as untested.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from valueagent import search_rules as rules
from valueagent import signals
from valueagent.search_rules import Choice, Drawn, Rule
from valueagent.signals import running_window, uniform_draw


@dataclass(frozen=True)
class Outcome:
    passed: bool
    tokens: int
    tests: int


@dataclass(frozen=True)
class TaskView:
    """What a replayed policy may use of one task: readings and visible verdicts of each sample; ``hidden``
    is read only to score the chosen sample."""

    task_id: str
    tokens: np.ndarray  # (N + 1,)
    visible_ok: np.ndarray  # (N + 1,) all visible cases passed
    visible_frac: np.ndarray  # (N + 1,) fraction of visible cases passed
    has_tests: bool
    hidden: np.ndarray  # (N + 1,) scoring only
    scores: Mapping[str, np.ndarray]  # signal -> (N + 1,)
    samples: tuple[Mapping[str, Any], ...]

    @property
    def n(self) -> int:
        return len(self.tokens) - 1


def single(t: TaskView) -> Outcome:
    return Outcome(bool(t.hidden[0]), int(t.tokens[0]), 0)


def always_test(t: TaskView, test_runs: int = 3) -> Outcome:
    """The live ``always-test`` policy: the greedy answer, then fresh samples 1, 2, ...; the visible tests on
    each until one passes (``test_runs`` at most); none passing: the best on the visible tests, earliest
    on ties."""
    drawn = [0]
    tests = 0
    for i in range(min(test_runs, t.n + 1)):
        if i > 0:
            drawn.append(i)
        if not t.has_tests:
            return Outcome(bool(t.hidden[i]), int(t.tokens[drawn].sum()), 0)
        tests += 1
        if t.visible_ok[i]:
            return Outcome(bool(t.hidden[i]), int(t.tokens[drawn].sum()), tests)
    best = max(drawn, key=lambda i: (t.visible_frac[i], -i))
    return Outcome(bool(t.hidden[best]), int(t.tokens[drawn].sum()), tests)


def oracle(t: TaskView, k: int | None = None) -> Outcome:
    pool = list(range(1, (k or t.n) + 1))
    return Outcome(bool(t.hidden[pool].any()), int(t.tokens[pool].sum()), 0)


def drive(rule: Rule, t: TaskView, score: np.ndarray | None = None, stop: StopFn | None = None) -> Outcome:
    """Run a search rule (:mod:`valueagent.search_rules`, the one the live policies run) on a bank's task: its
    samples answer the draws (``score`` per sample, cut where ``stop`` says), its visible verdicts the tests.
    Tokens are what the drawn samples cost; a test counts only when the task has visible tests."""
    tokens = tests = 0
    answer: Any = None
    while True:
        try:
            request = rule.send(answer)
        except StopIteration as done:
            choice: Choice = done.value
            passed = choice.index is not None and bool(t.hidden[choice.index])
            return Outcome(passed, tokens, tests)
        if request[0] == "draw":
            answer = []
            for i in request[1]:
                cut = stop(t, i) if stop is not None else None
                aborted = cut is not None and abandoned(t, i, cut)
                cost = int(cut) if aborted and cut is not None else int(t.tokens[i])
                tokens += cost
                answer.append(Drawn(score=0.0 if score is None else float(score[i]), tokens=cost, aborted=aborted))
        elif not t.has_tests:
            answer = None
        else:
            tests += 1
            answer = bool(t.visible_ok[request[1]])


def top1(t: TaskView, signal: str, k: int | None = None) -> Outcome:
    """Best of N by the signal, untested."""
    return drive(rules.rank(k or t.n, signal, max_tests=0), t, t.scores[signal])


def rank_then_test(t: TaskView, signal: str, k: int | None = None, max_tests: int | None = None) -> Outcome:
    """N fresh candidates; visible tests in signal order until one passes (``max_tests`` at most); with no
    visible tests or none passing, the top-ranked."""
    return drive(rules.rank(k or t.n, signal, max_tests=max_tests), t, t.scores[signal])


@dataclass(frozen=True)
class SeqThresholds:
    """Accept untested at ``score >= accept``; discard untested at ``score <= discard``; test in between."""

    accept: float
    discard: float


def sequential(t: TaskView, signal: str, th: SeqThresholds) -> Outcome:
    """After each fresh sample the signal decides: accept untested, test, or discard and resample."""
    return drive(rules.seq(t.n, signal, accept=th.accept, discard=th.discard), t, t.scores[signal])


StopFn = Callable[[TaskView, int], int | None]
"""The token count at which a sample is abandoned (None: it runs to the end)."""


def window_stop(trace: Callable[[Mapping[str, Any]], np.ndarray], threshold: float) -> StopFn:
    """Abandon a sample at the first token where the mean of the last ``WINDOW`` readings is <= threshold."""

    def stop(t: TaskView, i: int) -> int | None:
        rw = running_window(trace(t.samples[i]))
        hit = np.flatnonzero(rw <= threshold)
        return None if len(hit) == 0 else int(hit[0]) + len(trace(t.samples[i])) - len(rw) + 1

    return stop


def random_stop(rate: float, seed: int) -> StopFn:
    """The control: abandon a sample with probability ``rate`` at a uniformly drawn token."""

    def stop(t: TaskView, i: int) -> int | None:
        n = int(t.tokens[i])
        if n < 2 or uniform_draw(seed, t.task_id, 1000 + i) >= rate:
            return None
        return 1 + int(uniform_draw(seed, t.task_id, 2000 + i) * (n - 1))

    return stop


def no_stop(t: TaskView, i: int) -> int | None:
    return None


def abandoned(t: TaskView, i: int, cut: int | None) -> bool:
    """Whether a cut at ``cut`` tokens ends sample ``i`` early. A live decode checks the stop string and the
    length limit before the abort rule, and learns of an end-of-sequence only at the next token: a cut at
    the sample's last token abandons it only when it ended by EOS."""
    n = int(t.tokens[i])
    return cut is not None and (cut < n or (cut == n and t.samples[i].get("finish_reason") == "eos"))


def early_stop(t: TaskView, stop: StopFn) -> Outcome:
    """Fresh samples in order; a sample whose signal falls below the threshold is abandoned there (its tokens
    so far are spent); a finished one gets the visible tests; the first to pass is the answer. None passing:
    the first finished sample; none finished: a failure."""
    return drive(rules.stop(t.n, "stop rule"), t, stop=stop)


STOP_TRACES = signals.STOP_TRACES  # the per-token traces a stop rule watches (one home: valueagent.signals)
