"""Reading a run directory's ``results.jsonl`` (the per-task records of ``valueagent run``).

One JSON object per line with at least ``task_id``, ``policy``, ``passed``, ``test_runs``, ``backtracks``,
``revisions``, ``tokens``, ``wall_s``, ``value_trace`` and ``completion``. A torn or corrupt line (a crash
mid-write) is skipped and counted; when ``--resume`` redid a task, the last record of a (task, policy) wins.

The *value reading* used for ranking and calibration is defined once here (:data:`READING_DEFINITION`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "READING_DEFINITION",
    "POLICY_ORDER",
    "RESULTS_FILE",
    "RunResults",
    "TaskRecord",
    "final_reading",
    "load_results",
    "parse_record",
    "policy_order",
]

RESULTS_FILE = "results.jsonl"
POLICY_ORDER = ("single", "always-test", "value", "steer-high", "steer-low", "random-gate", "logprob-gate",
                "value+logprob")
"""``valueagent.agent.policies.POLICY_NAMES`` (a test keeps them equal); copied so that reading a run
does not import LangGraph."""
READING_DEFINITION = (
    "the position-normalized value (`value_norm`) of the LAST `final` reading in the task's value trace: "
    "the mean, over the finished answer the agent submitted last, of the per-token cosine with the value "
    "axis minus the calibrated position drift, divided by its spread — what the gate saw when it decided "
    "to accept or test that answer. Policies without a calibrated baseline report it unnormalized. "
    "`logprob` is the same reading's mean token log-probability (the control signal)."
)


@dataclass(frozen=True, kw_only=True)
class TaskRecord:
    """The fields of one result line that the eval uses (``raw`` keeps the whole line)."""

    task_id: str
    policy: str
    passed: bool
    test_runs: int = 0
    backtracks: int = 0
    repeated_backtracks: int = 0  # see repeated_backtracks()
    revisions: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    completion: str = ""
    value: float | None = None  # see READING_DEFINITION
    logprob: float | None = None
    error: str | None = None
    trace: tuple[Mapping[str, Any], ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


def final_reading(trace: Sequence[Mapping[str, Any]], key: str = "value_norm") -> float | None:
    """``key`` of the last ``final`` reading of a value trace (``value`` when ``value_norm`` is missing)."""
    for reading in reversed(trace):
        if reading.get("kind") != "final":
            continue
        x = reading.get(key)
        if x is None and key == "value_norm":
            x = reading.get("value")
        return None if x is None else float(x)
    return None


def repeated_backtracks(transcript: Sequence[Mapping[str, Any]]) -> int:
    """Backtracks whose resample wrote the dropped text again: the segments right after a ``backtrack``
    entry (which holds the dropped text) start with that text. Such a backtrack cost tokens and changed
    nothing; it happens where the gate flags text the model is certain of, which sampling redraws."""
    repeats = 0
    for i, entry in enumerate(transcript):
        if not isinstance(entry, Mapping) or entry.get("kind") != "backtrack":
            continue
        after = []
        for nxt in transcript[i + 1 :]:
            if not isinstance(nxt, Mapping) or nxt.get("kind") != "segment":
                break
            after.append(str(nxt.get("content") or ""))
        dropped = str(entry.get("content") or "")
        repeats += bool(dropped) and "".join(after).startswith(dropped)
    return repeats


def _num(rec: Mapping[str, Any], key: str, default: float = 0) -> float:
    x = rec.get(key)
    if x is None and isinstance(rec.get("used"), Mapping):
        x = rec["used"].get(key)  # a record that nests the spent budgets
    return default if x is None else float(x)


def parse_record(rec: Mapping[str, Any]) -> TaskRecord:
    """A :class:`TaskRecord` from one decoded result line; ``ValueError`` if required keys are missing."""
    missing = [k for k in ("task_id", "policy", "passed") if k not in rec]
    if missing:
        raise ValueError(f"result record lacks {missing}")
    trace = tuple(r for r in (rec.get("value_trace") or rec.get("trace") or ()) if isinstance(r, Mapping))
    return TaskRecord(
        task_id=str(rec["task_id"]),
        policy=str(rec["policy"]),
        passed=bool(rec["passed"]),
        test_runs=int(_num(rec, "test_runs")),
        backtracks=int(_num(rec, "backtracks")),
        repeated_backtracks=repeated_backtracks(rec.get("transcript") or ()),
        revisions=int(_num(rec, "revisions")),
        tokens=int(_num(rec, "tokens")),
        wall_s=float(_num(rec, "wall_s")),
        completion=str(rec.get("completion") or ""),
        value=final_reading(trace, "value_norm"),
        logprob=final_reading(trace, "logprob"),
        error=None if rec.get("error") in (None, "") else str(rec["error"]),
        trace=trace,
        raw=rec,
    )


@dataclass(frozen=True, kw_only=True)
class RunResults:
    """All records of a run, by policy then task id, plus what was dropped while reading."""

    by_policy: Mapping[str, Mapping[str, TaskRecord]]
    corrupt_lines: int = 0
    duplicates: int = 0
    source: str = ""

    @property
    def policies(self) -> list[str]:
        return policy_order(self.by_policy)

    def records(self, policy: str) -> list[TaskRecord]:
        """A policy's records in task order."""
        recs = self.by_policy.get(policy, {})
        return [recs[t] for t in sorted(recs, key=task_sort_key)]

    def task_ids(self) -> list[str]:
        ids = {t for recs in self.by_policy.values() for t in recs}
        return sorted(ids, key=task_sort_key)

    def common_tasks(self, policies: Sequence[str] | None = None) -> list[str]:
        """Tasks every one of ``policies`` (default: all) has a record for."""
        names = list(policies) if policies is not None else self.policies
        if not names:
            return []
        common = set.intersection(*(set(self.by_policy.get(p, {})) for p in names))
        return sorted(common, key=task_sort_key)

    def __iter__(self) -> Iterator[TaskRecord]:
        for policy in self.policies:
            yield from self.records(policy)


def task_sort_key(task_id: str) -> tuple[str, int, str]:
    """``HumanEval/2`` before ``HumanEval/10``: the prefix, then the numeric suffix if there is one."""
    head, _, tail = task_id.rpartition("/")
    return (head, int(tail), "") if tail.isdigit() else (head, -1, task_id)


def policy_order(names: Mapping[str, Any] | Sequence[str]) -> list[str]:
    """The eight standard policies in their canonical order, then any others alphabetically."""
    present = list(names)
    known = [p for p in POLICY_ORDER if p in present]
    return known + sorted(p for p in present if p not in POLICY_ORDER)


def load_results(path: str | Path) -> RunResults:
    """Read ``path`` (a run directory or a results.jsonl file). Missing file: ``FileNotFoundError``."""
    path = Path(path)
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"no {RESULTS_FILE} at {file}; pass a run directory written by `valueagent eval humaneval` "
            "or `valueagent run`"
        )
    by_policy: dict[str, dict[str, TaskRecord]] = {}
    corrupt = dups = 0
    with file.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, Mapping):
                    raise ValueError("not an object")
                rec = parse_record(data)
            except (ValueError, TypeError):
                corrupt += 1
                continue
            bucket = by_policy.setdefault(rec.policy, {})
            dups += rec.task_id in bucket
            bucket[rec.task_id] = rec
    return RunResults(by_policy=by_policy, corrupt_lines=corrupt, duplicates=dups, source=str(file))
