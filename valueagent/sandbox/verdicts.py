"""Reading a run's verdict as result values: what happened, in one status and one line of detail."""

from __future__ import annotations

import signal
from typing import Any

from valueagent.sandbox.core import Limits, Verdict
from valueagent.sandbox.results import CaseResult, ExecResult, IsolationLevel, Status

_NOT_FINISHED = "the trusted runner did not finish (the program killed it, or it was stopped)"


def exec_result(verdict: Verdict, level: IsolationLevel, limits: Limits) -> ExecResult:
    """The ExecResult of a ``run`` or ``score`` job."""
    raw = verdict.raw
    status, returncode, detail = _classify(verdict, limits)
    return ExecResult(
        status=status,
        returncode=returncode,
        duration_s=round(raw.duration_s, 6),
        stdout=raw.stdout.decode("utf-8", "replace"),
        stderr=raw.stderr.decode("utf-8", "replace"),
        isolation=level.label,
        detail=detail,
    )


def _classify(verdict: Verdict, limits: Limits) -> tuple[Status, int | None, str]:
    status, returncode, detail = _classify_outcome(verdict, limits)
    if verdict.raw.oom_killed and status in ("passed", "failed", "timeout"):
        # The cgroup's cap was hit: even when the main program went on to pass, a process of it died.
        killed = "together exceeded the memory limit and the kernel killed one of them"
        return "memory", returncode, f"the run's processes {killed} ({limits.memory_mb} MB + work dir)"
    return status, returncode, detail


def _classify_outcome(verdict: Verdict, limits: Limits) -> tuple[Status, int | None, str]:
    raw, outcome = verdict.raw, verdict.outcome
    if raw.spawn_error is not None:
        return "error", None, raw.spawn_error
    if raw.output_truncated or raw.stopped == "output_limit":
        return "output_limit", None, f"output exceeded {limits.output_limit} bytes"
    if raw.stopped == "cancelled":
        return "error", None, "cancelled"
    if raw.stopped == "deadline":
        return "timeout", None, f"exceeded the {limits.timeout:g}s time limit"
    if verdict.tampered:
        return "failed", None, "the verdict channel was tampered with (a forged or extra verdict)"
    if verdict.internal_error is not None:
        return "error", None, f"sandbox runner error: {verdict.internal_error}"
    if not verdict.started:
        tail = raw.stderr.decode("utf-8", "replace").strip()[-500:]
        return "error", None, f"the sandbox did not start (exit status {raw.exit_status}): {tail}"
    if outcome is None:
        return "failed", None, _NOT_FINISHED
    if "report" in outcome:
        return _classify_run(outcome, limits)
    return _classify_score(outcome, limits)


def _classify_run(outcome: dict[str, Any], limits: Limits) -> tuple[Status, int | None, str]:
    report = str(outcome.get("report", ""))
    exit_code, sig = outcome.get("exit"), outcome.get("signal")
    returncode = exit_code if sig is None else -int(sig)
    if outcome.get("timeout"):
        after = " (its main code had finished: lingering threads?)" if report == "done" else ""
        return "timeout", None, f"exceeded the {limits.timeout:g}s time limit{after}"
    if sig == signal.SIGXCPU:
        return "timeout", returncode, "exceeded its CPU time limit"
    if report == "exc MemoryError":
        return "memory", returncode, f"ran out of memory (limit {limits.memory_mb} MB)"
    if report == "done" and exit_code == 0:
        return "passed", 0, ""
    if report.startswith("exc "):
        return "failed", returncode, f"uncaught {report[4:]}"
    if report.startswith("exit "):
        return "failed", returncode, f"exited via SystemExit({report[5:]}) before the end of the program"
    if sig is not None:
        return "failed", returncode, f"killed by {_signal_name(int(sig))}"
    if report == "done":
        return "failed", returncode, f"ran to the end but exited with status {exit_code} (atexit or a thread?)"
    return "failed", returncode, f"exited with status {exit_code} before the end of the program (os._exit?)"


def _classify_score(outcome: dict[str, Any], limits: Limits) -> tuple[Status, int | None, str]:
    if outcome.get("passed") is True:
        return "passed", 0, ""
    detail = str(outcome.get("detail", ""))
    if outcome.get("error"):
        return "error", None, detail
    if outcome.get("timeout"):
        return "timeout", None, f"exceeded the {limits.timeout:g}s time limit: {detail}"
    if outcome.get("memory"):
        return "memory", 1, f"ran out of memory (limit {limits.memory_mb} MB): {detail}"
    return "failed", 1, detail


def case_results(verdict: Verdict, pairs: list[tuple[str, str]], limits: Limits) -> list[CaseResult]:
    """One CaseResult per case; cases the runner did not confirm are reported as not passed, with why."""
    confirmed = verdict.outcome is not None
    why = ""
    if not confirmed:
        status, _, why = _classify(verdict, limits)
        why = _NOT_FINISHED if status == "failed" else f"{status}: {why}"
    by_index = {event.get("index"): event for event in verdict.cases}
    results = []
    for index, (call, expected) in enumerate(pairs):
        event = by_index.get(index)
        if event is None:
            results.append(CaseResult(call, expected, False, None, "not run: " + (why or "no result")))
            continue
        passed = event.get("passed") is True
        error = None if event.get("error") is None else str(event["error"])
        if passed and not confirmed:
            passed, error = False, f"unconfirmed: {why}"
        got = event.get("got")
        output = str(event.get("output") or "")
        results.append(CaseResult(call, expected, passed, got if isinstance(got, str) else None, error, output))
    return results


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
