"""The public entry point: a pool of sandbox slots with sync and async calls that return values."""

from __future__ import annotations

import asyncio
import functools
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from valueagent.sandbox.core import Job, Limits, Verdict, run_job
from valueagent.sandbox.detect import LevelReport, detect, probe
from valueagent.sandbox.launch import SYSTEM_PYTHON
from valueagent.sandbox.programs import assemble_solution
from valueagent.sandbox.results import (
    CaseResult,
    ExecResult,
    IsolationLevel,
    SandboxUnavailable,
    SandboxWarning,
)
from valueagent.sandbox.slots import SlotPool
from valueagent.sandbox.verdicts import case_results, exec_result

T = TypeVar("T")
OUTPUT_LIMIT = 1_000_000


class Case(Protocol):
    """A visible test case: two Python expressions (``VisibleTest`` fits)."""

    @property
    def call(self) -> str: ...

    @property
    def expected(self) -> str: ...


class Sandbox:
    """Runs untrusted Python in ``workers`` isolated slots; results are values, never exceptions.

    The strongest isolation level that works here is detected at construction by running a probe
    program (see ``valueagent sandbox check``). ``min_level`` refuses to run below a level
    (``SandboxUnavailable``); ``level`` forces one (it must work here). A level weaker than bubblewrap
    is announced with a ``SandboxWarning`` and recorded in every result's ``isolation``.
    """

    def __init__(
        self,
        workers: int = 4,
        min_level: IsolationLevel | str | None = None,
        *,
        level: IsolationLevel | str | None = None,
        python: str = SYSTEM_PYTHON,
    ) -> None:
        floor = IsolationLevel.parse(min_level) if min_level is not None else None
        self.reports = _choose(level, floor, python)
        self.level: IsolationLevel = self.reports[-1].level
        self.python = python
        self.workers = workers
        if self.level < IsolationLevel.BWRAP and level is None:
            warnings.warn(
                f"sandbox isolation is {self.level.label!r}, weaker than bubblewrap: "
                + "; ".join(f"{r.level.label}: {r.reason}" for r in self.reports[:-1]),
                SandboxWarning,
                stacklevel=2,
            )
        self._pool = SlotPool(workers)
        self._executor: list[ThreadPoolExecutor] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._pool, self._executor)

    # ------------------------------------------------------------------------------------ running
    def run(
        self,
        source: str,
        *,
        timeout: float = 10.0,
        memory_mb: int = 1024,
        output_limit: int = OUTPUT_LIMIT,
        files: Mapping[str, str | bytes] | None = None,
        disk_mb: int = 64,
    ) -> ExecResult:
        """Run ``source`` as ``main.py`` in a fresh work dir holding ``files``.

        ``passed`` means its main code ran to the end and it exited 0; ``sys.exit()`` anywhere counts
        as an early exit. Limits: wall ``timeout`` (seconds), ``memory_mb`` of address space per
        process, ``output_limit`` bytes of stdout+stderr, ``disk_mb`` per file and for the work dir.
        """
        return self._run(source, timeout, memory_mb, output_limit, files, disk_mb, None)

    async def arun(
        self,
        source: str,
        *,
        timeout: float = 10.0,
        memory_mb: int = 1024,
        output_limit: int = OUTPUT_LIMIT,
        files: Mapping[str, str | bytes] | None = None,
        disk_mb: int = 64,
    ) -> ExecResult:
        """``run`` without blocking the event loop; cancelling the task kills the program."""
        return await self._in_thread(self._run, source, timeout, memory_mb, output_limit, files, disk_mb)

    def run_cases(
        self, solution: str, cases: Sequence[Case], *, timeout: float = 5.0, memory_mb: int = 1024
    ) -> list[CaseResult]:
        """Evaluate each case's ``call`` after running ``solution``; one result per case, in order.

        The solution runs in its own process and each call crosses to the checking process as plain
        data, compared with ``expected`` type-strictly. ``timeout`` applies to each case; a case that
        times out or crashes the solution's process is reported and the next case gets a fresh one.
        """
        return self._run_cases(solution, cases, timeout, memory_mb, None)

    async def arun_cases(
        self, solution: str, cases: Sequence[Case], *, timeout: float = 5.0, memory_mb: int = 1024
    ) -> list[CaseResult]:
        """``run_cases`` without blocking the event loop."""
        return await self._in_thread(self._run_cases, solution, cases, timeout, memory_mb)

    def score_humaneval(
        self,
        prompt: str,
        completion: str,
        test: str,
        entry_point: str,
        *,
        timeout: float = 10.0,
        memory_mb: int = 1024,
    ) -> ExecResult:
        """Hidden-test scoring: does ``check(entry_point)`` from ``test`` pass for prompt + completion?

        The solution (``assemble_solution``) runs in one process; the prompt's helpers and the tests
        run in the trusted runner, calling the solution through a proxy. ``detail`` names the failure
        (exception type and test line) without the tests' text; the tests never enter the solution's
        process.
        """
        return self._score(prompt, completion, test, entry_point, timeout, memory_mb, None)

    async def ascore_humaneval(
        self,
        prompt: str,
        completion: str,
        test: str,
        entry_point: str,
        *,
        timeout: float = 10.0,
        memory_mb: int = 1024,
    ) -> ExecResult:
        """``score_humaneval`` without blocking the event loop."""
        return await self._in_thread(self._score, prompt, completion, test, entry_point, timeout, memory_mb)

    # ---------------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Release the worker slots (their uids) and threads. Idempotent."""
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sandbox(level={self.level.label!r}, workers={self.workers})"

    # ---------------------------------------------------------------------------------- internals
    def _run(
        self,
        source: str,
        timeout: float,
        memory_mb: int,
        output_limit: int,
        files: Mapping[str, str | bytes] | None,
        disk_mb: int,
        cancel: threading.Event | None,
    ) -> ExecResult:
        limits = Limits(timeout, memory_mb, output_limit, disk_mb)
        job = Job("run", {"source": source}, files=_files(files, "main.py", source))
        return exec_result(self._execute(job, limits, cancel), self.level, limits)

    def _score(
        self,
        prompt: str,
        completion: str,
        test: str,
        entry_point: str,
        timeout: float,
        memory_mb: int,
        cancel: threading.Event | None,
    ) -> ExecResult:
        limits = Limits(timeout, memory_mb, OUTPUT_LIMIT)
        solution = assemble_solution(prompt, completion, entry_point)
        hidden = {"prompt": prompt, "test": test, "entry_point": entry_point}
        job = Job("score", {"solution": solution}, later=hidden, files=_files(None, "solution.py", solution))
        return exec_result(self._execute(job, limits, cancel), self.level, limits)

    def _run_cases(
        self, solution: str, cases: Sequence[Case], timeout: float, memory_mb: int, cancel: threading.Event | None
    ) -> list[CaseResult]:
        pairs = [(str(case.call), str(case.expected)) for case in cases]
        if not pairs:
            return []
        total = timeout * (len(pairs) + 1) + 1.0
        limits = Limits(total, memory_mb, OUTPUT_LIMIT)
        job = Job(
            "cases",
            {"solution": solution, "case_timeout": float(timeout)},
            later=pairs,
            files=_files(None, "solution.py", solution),
        )
        return case_results(self._execute(job, limits, cancel), pairs, limits)

    def _execute(self, job: Job, limits: Limits, cancel: threading.Event | None) -> Verdict:
        with self._pool.slot() as slot:
            return run_job(job, limits, level=self.level, slot=slot, python=self.python, cancel=cancel)

    async def _in_thread(self, method: Callable[..., T], *args: object) -> T:
        if not self._executor:
            self._executor.append(ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox"))
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor[0], functools.partial(method, *args, cancel))
        except asyncio.CancelledError:
            cancel.set()  # the worker kills the program and frees its slot within ~50 ms
            raise


def _choose(level: IsolationLevel | str | None, floor: IsolationLevel | None, python: str) -> list[LevelReport]:
    if level is not None:
        forced = IsolationLevel.parse(level)
        report = probe(forced, python=python)
        if not report.available:
            raise SandboxUnavailable(f"isolation level {forced.label!r} does not work here: {report.reason}")
        if floor is not None and forced < floor:
            raise SandboxUnavailable(f"level {forced.label!r} is below min_level {floor.label!r}")
        return [report]
    reports = detect(python=python, at_least=floor)
    if not reports or not reports[-1].available:
        tried = "; ".join(f"{r.level.label}: {r.reason}" for r in reports)
        need = f" at or above {floor.label!r}" if floor is not None else ""
        raise SandboxUnavailable(
            f"no sandbox isolation level{need} works here ({tried}). For the strongest level run as root with "
            "`apt-get install -y bubblewrap` and the system python3 at /usr/bin/python3."
        )
    return reports


def _files(files: Mapping[str, str | bytes] | None, main: str, source: str) -> dict[str, bytes]:
    out = {main: source.encode("utf-8", "surrogateescape")}
    for path, data in (files or {}).items():
        parts = path.split("/")
        if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"file paths must be relative and normalised, without '..': {path!r}")
        if path == main:
            raise ValueError(f"{main!r} is the program itself; pass it as the source")
        out[path] = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return out


def _shutdown(pool: SlotPool, executors: list[ThreadPoolExecutor]) -> None:
    for executor in executors:
        executor.shutdown(wait=False, cancel_futures=True)
    pool.close()
