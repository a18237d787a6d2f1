"""Progress of long commands on stderr: across items and inside each one, with an estimate of time left.

On a terminal a live bar, with one line under it per item in flight (``run`` and ``eval``: segments, tokens
so far, tests run, backtracks, from the agents' ``valueagent/value`` stream events); off a terminal (stderr
in a log file) one line per finished item and, at most every ``quiet_s`` seconds per item, one line of what
it is doing (tests and backtracks at once). The estimate counts the items in flight by their share of the
tokens a finished item took, so it exists before the first item finishes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


def mmss(seconds: float) -> str:
    """``m:ss``."""
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}"


@dataclass
class Activity:
    """What one (task, policy) pair is doing, folded from its stream events."""

    attempt: int = 0
    segments: int = 0
    tokens: int = 0  # generated tokens read so far, backtracked ones included
    kept: int = 0  # tokens of the current attempt that stand (what a final reading will cover)
    tests: int = 0
    backtracks: int = 0
    value: float | None = None
    last: str = ""

    def update(self, event: dict[str, Any]) -> None:
        """Fold in one ``valueagent/value`` event (a reading, a test run, a backtrack or branch)."""
        kind, n = event.get("kind"), int(event.get("n_tokens") or 0)
        attempt = event.get("attempt")
        if isinstance(attempt, int) and attempt != self.attempt:
            self.attempt, self.kept = attempt, 0
        if kind == "segment":
            self.segments += 1
            self.tokens += n
            self.kept += n
        elif kind == "final":  # covers the whole attempt: only what segments did not already count
            self.tokens += max(0, n - self.kept)
            self.kept = max(self.kept, n)
        elif kind == "tests":
            self.tests += 1
        elif kind in ("backtrack", "branch"):
            self.backtracks += 1
            self.kept = int(event.get("position") or 0)
        if kind in ("segment", "final") and event.get("value") is not None:
            self.value = float(event["value"])
        self.last = str(kind)

    def describe(self) -> str:
        value = "" if self.value is None else f" · value {self.value:+.3f}"
        return (f"{self.tokens} tokens · {self.tests} test runs · {self.backtracks} backtracks · "
                f"{self.segments} segments · attempt {self.attempt + 1}{value}")


class TaskProgress:
    """Progress of a long run on stderr (see the module doc). ``expected_tokens``: a first guess of the tokens
    an item takes (its budget), replaced by the mean of finished items once there are some."""

    def __init__(self, description: str, *, expected_tokens: int | None = None, quiet_s: float = 30.0,
                 max_rows: int = 16) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.description = description
        self.total: int | None = None
        self.done = 0
        self.inflight: dict[str, Activity] = {}
        self._expected = expected_tokens
        self._token_counts: list[int] = []
        self._quiet_s, self._max_rows = quiet_s, max_rows
        self._said: dict[str, float] = {}
        self._t0 = time.monotonic()
        self._first = 0  # items done when this run started
        self._bar: Any = None
        self._task: Any = None
        self._live: Any = None

    def __enter__(self) -> TaskProgress:
        if self.console.is_terminal:
            from rich.live import Live
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            # The bar and the time left count items in flight by their share; the count, finished items only.
            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[count]}"), TextColumn("{task.fields[status]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=self.console)
            self._task = self._bar.add_task(self.description, total=None, status="loading", count="")
            self._live = Live(console=self.console, get_renderable=self._render, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self.inflight.clear()
            self._live.refresh()
            self._live.__exit__(*exc)

    def _render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        rows = [Text(f"  {key}: {act.describe()}", style="dim", overflow="ellipsis", no_wrap=True)
                for key, act in list(self.inflight.items())[: self._max_rows]]
        return Group(self._bar.get_renderable(), *rows)

    def start(self, total: int, done: int = 0) -> None:
        """The number of items, and how many a previous run already finished."""
        self.total, self.done, self._first = total, done, done
        status = f"{done} already done" if done else ""
        if self._bar is not None:
            self._bar.update(self._task, total=total, completed=done, status=status, count=f"{done}/{total}")
        else:
            self.console.print(f"{self.description}: {total} to run" + (f", {status}" if status else ""))

    def event(self, key: str, payload: dict[str, Any]) -> None:
        """An event inside item ``key`` (e.g. ``HumanEval/3 value``)."""
        act = self.inflight.setdefault(key, Activity())
        act.update(payload)
        if self._bar is not None:
            self._bar.update(self._task, completed=self._completed())
            return
        now = time.monotonic()
        if act.last in ("tests", "backtrack", "branch") or now - self._said.get(key, self._t0) >= self._quiet_s:
            self._said[key] = now
            self.console.print(f"{self.description} {key}: {act.describe()} [{self._clock()}]",
                               highlight=False, soft_wrap=True)

    def advance(self, status: str, *, key: str | None = None, tokens: int | None = None) -> None:
        """One item finished (``key``, having generated ``tokens``); ``status`` says how the run stands."""
        self.done += 1
        if key is not None:
            self.inflight.pop(key, None)
            self._said.pop(key, None)
        if tokens is not None:
            self._token_counts.append(tokens)
        if self._bar is not None:
            self._bar.update(self._task, completed=self._completed(), status=status,
                             count=f"{self.done}/{self.total if self.total is not None else '?'}")
            return
        total = "?" if self.total is None else self.total
        self.console.print(f"{self.description} {self.done}/{total} [{self._clock()}] {status}",
                           highlight=False, soft_wrap=True)  # one line per item, however long

    def _clock(self) -> str:
        elapsed = time.monotonic() - self._t0
        eta = self._eta(elapsed)
        return mmss(elapsed) + (f", ~{mmss(eta)} left" if eta is not None else "")

    def _partial(self) -> float:
        """Items in flight, each counted by its tokens so far over what an item takes (at most 0.9)."""
        expected = sum(self._token_counts) / len(self._token_counts) if self._token_counts else self._expected
        if not expected:
            return 0.0
        return sum(min(0.9, act.tokens / expected) for act in self.inflight.values())

    def _completed(self) -> float:
        return self.done + self._partial()

    def _eta(self, elapsed: float) -> float | None:
        """Time left at this run's own rate (items a previous run finished do not count toward it)."""
        if self.total is None:
            return None
        ran = self._completed() - self._first
        return elapsed / ran * (self.total - self._completed()) if ran > 0 and self.done < self.total else None
