"""MBPP (Austin et al. 2021) as tasks the agent runs: the original files, the standard split, the format.

The package ships an exact copy of ``mbpp.jsonl`` (974 problems) and ``sanitized-mbpp.json`` (427)
from google-research's ``mbpp/`` folder (``data/mbpp/PROVENANCE.md``: commits and sha256, checked at
every load). A problem becomes a :class:`~valueagent.tasks.Task` in the shape of EvalPlus's MBPP prompts:

- ``prompt``: a docstring holding the description and the FIRST ``assert`` (it names the function and
  shows its call shape); the agent is asked for the complete function;
- visible tests: that first assert, run as its own comparison (call ``(LHS) == (RHS)``, expected
  ``True``): the sandbox's visible cases compare type-strictly, and 18 references return ``240.0`` where
  the assert says ``240``; hidden and visible must judge alike;
- hidden ``test``: ``check(candidate)`` running all three asserts and the challenge asserts (after the
  problem's ``test_setup_code``); only scoring reads it.

Problems whose reference solution fails its own tests in this project's sandbox are excluded, each with
its reason, in ``data/mbpp/exclusions.json`` (``scripts/check_mbpp_references.py`` regenerates it).
Nothing here executes code: parsing is ``ast.parse`` only.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import textwrap
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Literal

from valueagent.tasks import Task, TaskFormatError, VisibleTest

__all__ = [
    "MBPP_SHA256",
    "MBPP_SPLITS",
    "MbppSplit",
    "load_mbpp",
    "mbpp_exclusions",
    "mbpp_problems",
    "mbpp_split",
    "mbpp_task",
]

MbppSplit = Literal["test", "validation", "train", "prompt", "all"]

MBPP_SPLITS: Mapping[str, tuple[int, int]] = {
    "prompt": (1, 10),
    "test": (11, 510),
    "validation": (511, 600),
    "train": (601, 974),
}
"""The standard split by ``task_id`` (inclusive ranges): Austin et al. 2021 and the common loaders."""

MBPP_SHA256 = "0b7004a79cd62d9ec7ecdd5a6e5f0ef1210ff00b286df3c5d5b57bf38c58e19a"
SANITIZED_SHA256 = "ca95deaa9a01ef0a6f439f88bcf0dd3db3563d22f22aad6cae04ebb9a8d8c8e9"
TASK_PREFIX = "Mbpp/"  # EvalPlus's ids, so samples files can be scored by its MBPP+ evaluator


def _data(name: str) -> bytes:
    return resources.files("valueagent").joinpath(f"data/mbpp/{name}").read_bytes()


def _checked(name: str, sha256: str) -> bytes:
    blob = _data(name)
    if (got := hashlib.sha256(blob).hexdigest()) != sha256:
        raise TaskFormatError(f"valueagent/data/mbpp/{name} is corrupted (sha256 {got[:12]}…, expected "
                              f"{sha256[:12]}…): reinstall valueagent")
    return blob


@cache
def mbpp_problems() -> tuple[dict[str, Any], ...]:
    """The 974 original records (sha256-checked), in file order."""
    lines = _checked("mbpp.jsonl", MBPP_SHA256).decode("utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


@cache
def sanitized_problems() -> tuple[dict[str, Any], ...]:
    """The 427 human-verified records of ``sanitized-mbpp.json`` (sha256-checked)."""
    return tuple(json.loads(_checked("sanitized-mbpp.json", SANITIZED_SHA256)))


@cache
def mbpp_exclusions() -> Mapping[str, str]:
    """``task_id -> reason`` for problems whose reference fails its own tests here (never evaluated)."""
    doc = json.loads(_data("exclusions.json"))
    return {str(k): str(v) for k, v in doc["excluded"].items()}


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def _called_function(expr: ast.expr) -> str | None:
    """The first function the assert calls that is not a builtin (its entry point), in source order; the
    first call when all are builtin names (MBPP 126 defines its own ``sum``)."""
    calls = [n for n in ast.walk(expr) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    calls.sort(key=lambda n: (n.lineno, n.col_offset))
    for call in calls:
        assert isinstance(call.func, ast.Name)
        if not hasattr(builtins, call.func.id):
            return call.func.id
    return calls[0].func.id if calls and isinstance(calls[0].func, ast.Name) else None


def mbpp_task(record: Mapping[str, Any]) -> Task:
    """One original MBPP record as a task (see the module docstring for the format)."""
    number = record["task_id"]
    first = record["test_list"][0].strip()
    tree = ast.parse(first)
    stmt = tree.body[0]
    if not (isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Compare) and len(stmt.test.ops) == 1
            and isinstance(stmt.test.ops[0], ast.Eq)):
        raise TaskFormatError(f"MBPP {number}: the first test is not `assert CALL == EXPECTED`")
    entry = _called_function(stmt.test.left)
    if entry is None:
        raise TaskFormatError(f"MBPP {number}: the first assert calls no function of the solution")
    left = ast.get_source_segment(first, stmt.test.left)
    right = ast.get_source_segment(first, stmt.test.comparators[0])
    assert left is not None and right is not None
    text = " ".join(record["text"].split())
    prompt = f'"""\n{text}\n{first}\n"""\n'
    body = [_lf(record.get("test_setup_code") or "").strip()]
    body += [_lf(t).strip() for t in (*record["test_list"], *record.get("challenge_test_list", ()))]
    test = "def check(candidate):\n" + textwrap.indent("\n".join(b for b in body if b), "    ") + "\n"
    return Task(f"{TASK_PREFIX}{number}", prompt, entry, test, canonical_solution=_lf(record["code"]).strip() + "\n",
                visible=(VisibleTest(f"({left}) == ({right})", "True", first),))


@cache
def load_mbpp(*, include_excluded: bool = False) -> tuple[Task, ...]:
    """All MBPP tasks in ``task_id`` order; without ``include_excluded`` the listed exclusions are dropped."""
    tasks = tuple(mbpp_task(r) for r in mbpp_problems())
    if include_excluded:
        return tasks
    excluded = mbpp_exclusions()
    return tuple(t for t in tasks if t.task_id not in excluded)


def split_of(task_id: str) -> str:
    """The standard split an ``Mbpp/<n>`` id belongs to."""
    number = int(task_id.removeprefix(TASK_PREFIX))
    for name, (lo, hi) in MBPP_SPLITS.items():
        if lo <= number <= hi:
            return name
    raise ValueError(f"{task_id} is outside MBPP's ids 1-974")


def mbpp_split(name: str) -> tuple[Task, ...]:
    """The tasks of one split (``test`` 500, ``validation`` 90, ``train`` 374, ``prompt`` 10, or ``all``),
    less the listed exclusions; ``train+validation`` joins two."""
    parts = name.split("+")
    for part in parts:
        if part not in (*MBPP_SPLITS, "all"):
            raise ValueError(f"unknown MBPP split {part!r}; use {', '.join(MBPP_SPLITS)} or all "
                             "(join two with +, e.g. train+validation)")
    tasks = load_mbpp()
    if "all" in parts:
        return tasks
    return tuple(t for t in tasks if split_of(t.task_id) in parts)


def split_record() -> dict[str, Any]:
    """What a run's ``config.json`` records about the split and the data it was drawn from."""
    return {"benchmark": "mbpp", "sha256": MBPP_SHA256, "ranges": {k: list(v) for k, v in MBPP_SPLITS.items()},
            "excluded": dict(mbpp_exclusions())}
