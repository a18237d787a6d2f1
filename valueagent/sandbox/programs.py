"""HumanEval-style programs: a prompt plus a model's completion, and the tests that check them."""

from __future__ import annotations

import ast
import re
import textwrap

_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def strip_fences(completion: str) -> str:
    """The code inside the first Markdown code fence, or the text unchanged when there is none."""
    match = _FENCE.search(completion)
    return match.group(1) if match else completion


def assemble_solution(prompt: str, completion: str, entry_point: str) -> str:
    """One program that defines ``entry_point``: the prompt followed by the completion.

    Handles the three shapes models produce: a body that continues the prompt's signature (the
    HumanEval convention), a whole function (signature included, possibly with imports and helpers;
    it replaces the prompt's stub, whose imports and helpers stay available), and a body whose
    indentation was lost. Markdown fences are removed first.
    """
    code = strip_fences(completion)
    whole = textwrap.dedent(code).strip("\n")
    if _defines(whole, entry_point):
        return f"{prompt.rstrip()}\n\n\n{whole}\n"
    continued = prompt + code
    if _parses(continued) or not code.strip():
        return continued
    reindented = prompt + textwrap.indent(whole, "    ") + "\n"
    return reindented if _parses(reindented) else continued


def humaneval_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The classic single program: solution, tests, ``check(entry_point)``.

    Run in one process it trusts the solution not to tamper with the tests; ``Sandbox.score_humaneval``
    keeps them in separate processes instead. Useful for ``Sandbox.run`` and for reading.
    """
    return f"{assemble_solution(prompt, completion, entry_point)}\n\n{test}\n\ncheck({entry_point})\n"


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name for node in tree.body)


def _parses(code: str) -> bool:
    try:
        compile(code, "<solution>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True
