"""docs/qwen3-8b.md: every `valueagent` command it shows parses with the real CLI (no model loads), and
every policy it names is registered. The commands need a GPU to run; this keeps their flags honest."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from valueagent.agent.policies import policy_names
from valueagent.cli.main import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "qwen3-8b.md"


def doc_commands() -> list[list[str]]:
    """The `valueagent ...` lines of the doc's bash blocks, continuations joined, comments and redirections
    dropped, split as a shell would."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if ">" in words:
                words = words[: words.index(">")]
            if words[:1] == ["valueagent"]:
                commands.append(words[1:])
    return commands


def resolve(args: list[str]) -> tuple[str, Any, list[str]]:
    """The subcommand ``args`` names (``"bank build"``), its command object (typer's own click), and the
    arguments left for it."""
    cmd: Any = typer.main.get_command(app)
    ctx = cmd.make_context("valueagent", [], resilient_parsing=True)
    path: list[str] = []
    rest = list(args)
    while hasattr(cmd, "get_command"):  # a group
        sub = cmd.get_command(ctx, rest[0])
        assert sub is not None, f"no command {rest[0]!r} in valueagent {' '.join(args)}"
        path.append(rest.pop(0))
        cmd = sub
    return " ".join(path), cmd, rest


def test_the_doc_shows_every_step() -> None:
    shown = {resolve(args)[0] for args in doc_commands()}
    assert {"model info", "axis import", "axis build", "axis eval", "run", "calibrate", "bank build",
            "bank replay", "bank compare", "eval humaneval"} <= shown


@pytest.mark.parametrize("args", doc_commands(), ids=lambda a: " ".join(a[:2]))
def test_every_command_parses(args: list[str]) -> None:
    _, cmd, rest = resolve(args)
    cmd.make_context(cmd.name or "", rest)  # raises on an unknown flag, a bad value or a missing argument
    if "--policies" in rest:
        names = set(rest[rest.index("--policies") + 1].split(","))
        assert names <= set(policy_names()), f"unregistered: {names - set(policy_names())}"
