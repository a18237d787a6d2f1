"""run_cases: per-case feedback that one bad case cannot hide, compared type-strictly."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from valueagent.sandbox import CaseResult, IsolationLevel, Sandbox, SandboxWarning


@dataclass(frozen=True)
class Case:
    call: str
    expected: str


SOLUTION = """
def f(x):
    if x == "loop":
        while True:
            pass
    if x == "exit":
        import os
        os._exit(0)
    if x == "raise":
        raise ValueError("bad input")
    if x == "segv":
        import ctypes
        ctypes.string_at(0)
    print("called with", x)
    return x * 2


def pair(a, b=1):
    return (a, b)


def lies(x):
    class Anything:
        def __eq__(self, other):
            return True
    return Anything()
"""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        box = Sandbox(workers=2)
    yield box
    box.close()


def test_one_bad_case_hides_nothing(sandbox: Sandbox) -> None:
    cases = [
        Case("f(1)", "2"),
        Case("f(2)", "5"),
        Case("f('loop')", "None"),
        Case("f('exit')", "None"),
        Case("f('raise')", "None"),
        Case("f('segv')", "None"),
        Case("f(3)", "6"),
        Case("missing(1)", "1"),
        Case("f(1)", "not valid python ("),
    ]
    results = sandbox.run_cases(SOLUTION, cases, timeout=0.5)
    assert [r.call for r in results] == [c.call for c in cases]
    assert [r.passed for r in results] == [True, False, False, False, False, False, True, False, False]
    ok, wrong, loop, exit_, raised, segv, after, missing, bad_expected = results
    assert ok == CaseResult("f(1)", "2", True, "2", None, "called with 1\n")
    assert wrong.got == "4" and wrong.error == "expected 5, got 4"
    assert loop.error == "timed out after 0.5s"
    assert "exited with code 0" in (exit_.error or "")
    assert raised.error == "ValueError: bad input"
    assert "killed by signal 11" in (segv.error or "")
    assert after.output == "called with 3\n"
    assert missing.error == "NameError: name 'missing' is not defined"
    assert (bad_expected.error or "").startswith("could not evaluate the expected value: SyntaxError")


@pytest.mark.parametrize(
    ("call", "expected", "passed"),
    [
        ("f(1)", "2", True),
        ("f(1)", "2.0", False),
        ("f(1)", "True", False),
        ("f(True)", "2", True),
        ("pair(1)", "(1, 1)", True),
        ("pair(1)", "[1, 1]", False),
        ("pair([1], b={'k': {2}})", "([1], {'k': {2}})", True),
        ("f(0.1) + 0.2", "0.4", True),
        ("f('ab')", "'abab'", True),
        ("sorted(f([3, 1]))", "[1, 1, 3, 3]", True),
        ("lies(1)", "1", False),
    ],
)
def test_comparison_is_type_strict(sandbox: Sandbox, call: str, expected: str, passed: bool) -> None:
    [result] = sandbox.run_cases(SOLUTION, [Case(call, expected)])
    assert result.passed is passed, result


def test_types_differ_is_spelled_out(sandbox: Sandbox) -> None:
    [result] = sandbox.run_cases(SOLUTION, [Case("f(1)", "2.0")])
    assert result.error == "expected 2.0, got 2 (types differ: int vs float)"


def test_non_plain_results_and_arguments_are_explained(sandbox: Sandbox) -> None:
    lies, arg = sandbox.run_cases(SOLUTION, [Case("lies(1)", "1"), Case("f(lambda: 1)", "1")])
    assert lies.got is None and "cannot cross the sandbox boundary" in (lies.error or "")
    assert "cannot pass this argument" in (arg.error or "")


@pytest.mark.parametrize(
    ("solution", "error"),
    [
        ("def f(:\n", "SyntaxError"),
        ("raise RuntimeError('at import')\ndef f(x):\n    return x\n", "RuntimeError: at import"),
        ("import sys\nsys.exit(0)\n", "SystemExit"),
        ("while True:\n    pass\n", "did not finish loading within 0.5s"),
    ],
)
def test_a_solution_that_cannot_load_fails_every_case_with_the_reason(
    sandbox: Sandbox, solution: str, error: str
) -> None:
    results = sandbox.run_cases(solution, [Case("f(1)", "1"), Case("f(2)", "2")], timeout=0.5)
    assert [r.passed for r in results] == [False, False]
    assert all(error in (r.error or "") for r in results), results


def test_prints_while_loading_reach_the_first_case(sandbox: Sandbox) -> None:
    first, second = sandbox.run_cases("print('loading')\ndef f(x):\n    return x\n", [Case("f(1)", "1")] * 2)
    assert first.output == "loading\n" and second.output == ""


def test_output_flooding_a_case_is_capped_and_cannot_stop_the_run(sandbox: Sandbox) -> None:
    solution = (
        "import os\ndef f(x):\n    for _ in range(1000):\n"
        "        print('y' * 1000)\n        os.write(1, b'z' * 1000)\n    return x\n"
    )
    results = sandbox.run_cases(solution, [Case("f(1)", "1"), Case("f(2)", "2")])
    assert [r.passed for r in results] == [True, True]
    assert len(results[0].output) < 10_000 and results[0].output.endswith("[output truncated]")


def test_no_cases_no_run(sandbox: Sandbox) -> None:
    assert sandbox.run_cases("def f(): pass", []) == []


async def test_async_cases(sandbox: Sandbox) -> None:
    results = await sandbox.arun_cases(SOLUTION, [Case("f(2)", "4"), Case("pair(2, 3)", "(2, 3)")])
    assert [r.passed for r in results] == [True, True]


def test_killing_the_checker_never_yields_an_unconfirmed_pass(sandbox: Sandbox) -> None:
    solution = "import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return x\n"
    results = sandbox.run_cases(solution, [Case("f(1)", "1"), Case("f(2)", "2")], timeout=2)
    if sandbox.level >= IsolationLevel.UNSHARE:  # the checker is the pid namespace's init: immune
        assert [r.passed for r in results] == [True, True]
    else:
        assert [r.passed for r in results] == [False, False]
        assert all(r.error and ("unconfirmed" in r.error or "not run" in r.error) for r in results)
