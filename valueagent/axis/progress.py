"""Progress of the long stages of an axis build or eval on stderr: stage headers and counted work with a
rate and the time left, redrawn in place on a terminal and written as plain lines (at most one every
``every_s`` seconds, and the last) when stderr is a log file."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour)."""
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Stages:
    """Numbered stage headers, ``[label] stage 2/4 rollouts: ... (elapsed 1:02)``."""

    def __init__(self, label: str, names: tuple[str, ...], stream: TextIO | None = None) -> None:
        self.label, self.names = label, names
        self.stream = stream or sys.stderr
        self._t0 = time.monotonic()

    def begin(self, name: str, detail: str = "") -> None:
        i = self.names.index(name) + 1
        elapsed = clock(time.monotonic() - self._t0)
        print(f"[{self.label}] stage {i}/{len(self.names)} {name}" + (f": {detail}" if detail else "")
              + f" (elapsed {elapsed})", file=self.stream, flush=True)


class Counter:
    """``done`` of ``total`` items of one stage, with the rate and the time left at that rate."""

    def __init__(self, label: str, total: int, *, every_s: float = 30.0, stream: TextIO | None = None) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._t0 = self._said = time.monotonic()

    def update(self, done: int, extra: str = "") -> None:
        now = time.monotonic()
        rate = done / max(now - self._t0, 1e-9)
        left = (self.total - done) / max(rate, 1e-9)
        line = f"{self.label}: {done}/{self.total}{extra}, {rate:.2f}/s, ~{clock(left)} left"
        if self.tty:
            print(f"\r{line}", end="", file=self.stream, flush=True)
        elif done >= self.total or now - self._said >= self.every_s:
            self._said = now
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and self.total:
            print(file=self.stream, flush=True)
