"""Assembling HumanEval-style programs from a prompt and the shapes of completion models produce."""

from __future__ import annotations

import pytest

from valueagent.sandbox import assemble_solution, humaneval_program, strip_fences

PROMPT = '''from typing import List


def helper(x: int) -> int:
    return x + 1


def add_all(xs: List[int]) -> int:
    """Sum of helper(x) for x in xs.
    >>> add_all([1, 2])
    5
    """
'''
BODY = "    return sum(helper(x) for x in xs)\n"
WHOLE = "def add_all(xs: List[int]) -> int:\n    return sum(helper(x) for x in xs)\n"


def _load(program: str) -> dict[str, object]:
    namespace: dict[str, object] = {}
    exec(compile(program, "<test>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize(
    "completion",
    [
        BODY,
        WHOLE,
        "\n" + WHOLE,
        "from typing import List\n\n" + WHOLE,
        f"```python\n{WHOLE}```\nThis sums helper over xs.",
        f"Here you go:\n```\n{BODY}```",
        "return sum(helper(x) for x in xs)\n",  # indentation lost
        "    " + WHOLE.replace("\n", "\n    "),  # a whole function, indented
    ],
    ids=["body", "whole", "leading-newline", "with-imports", "fenced", "fenced-body", "unindented-body", "indented"],
)
def test_every_completion_shape_defines_a_working_entry_point(completion: str) -> None:
    namespace = _load(assemble_solution(PROMPT, completion, "add_all"))
    add_all = namespace["add_all"]
    assert callable(add_all)
    assert add_all([1, 2]) == 5


def test_a_broken_completion_stays_broken() -> None:
    program = assemble_solution(PROMPT, "    return (\n", "add_all")
    with pytest.raises(SyntaxError):
        compile(program, "<test>", "exec")


def test_an_empty_completion_leaves_the_stub() -> None:
    assert _load(assemble_solution(PROMPT, "", "add_all"))["add_all"]([1]) is None  # type: ignore[operator]


def test_strip_fences_leaves_plain_code_alone() -> None:
    assert strip_fences(BODY) == BODY
    assert strip_fences("```py\nx = 1\n```") == "x = 1\n"


def test_humaneval_program_ends_with_the_check_call() -> None:
    test = "def check(candidate):\n    assert candidate([1, 2]) == 5\n"
    program = humaneval_program(PROMPT, BODY, test, "add_all")
    assert program.rstrip().endswith("check(add_all)")
    _load(program)  # runs the check: raises if it fails
