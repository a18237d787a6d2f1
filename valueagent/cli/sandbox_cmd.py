"""CLI commands: ``valueagent sandbox run FILE`` and ``valueagent sandbox check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    sandbox_app = typer.Typer(
        help="Run untrusted Python in the sandbox, and see which isolation works on this machine.",
        no_args_is_help=True,
    )
    sandbox_app.command("run")(run)
    sandbox_app.command("check")(check)
    app.add_typer(sandbox_app, name="sandbox")


def run(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="Python program.")],
    timeout: Annotated[float, typer.Option("--timeout", min=0.01, help="Wall-clock limit in seconds.")] = 10.0,
    memory_mb: Annotated[int, typer.Option("--memory-mb", min=64, help="Address-space limit per process.")] = 1024,
    min_level: Annotated[str | None, typer.Option("--min-level", help="Refuse to run below this level.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run FILE isolated and bounded. Exits 0 whatever the program did; the outcome is in the output."""
    from valueagent.sandbox import Sandbox, SandboxUnavailable

    try:
        with Sandbox(workers=1, min_level=min_level) as sandbox:
            result = sandbox.run(file.read_text("utf-8"), timeout=timeout, memory_mb=memory_mb)
    except (SandboxUnavailable, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    typer.echo(f"{result.status} ({result.isolation}, {result.duration_s:.3f}s, returncode {result.returncode})")
    if result.detail:
        typer.echo(result.detail)
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        if text:
            typer.echo(f"--- {name} ---\n{text.rstrip()}")


def check(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Probe every isolation level on this machine and say which one a Sandbox would use, and why."""
    from valueagent.sandbox import IsolationLevel, cgroups, probe

    reports = [probe(level) for level in sorted(IsolationLevel, reverse=True)]
    chosen = next((report for report in reports if report.available), None)
    cgroup = cgroups.describe()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "level": chosen.level.label if chosen else None,
                    "cgroup": cgroup,
                    "levels": [report.to_dict() for report in reports],
                }
            )
        )
        return
    if chosen is None:
        typer.echo("no isolation level works here")
    else:
        strongest = " (the strongest)" if chosen.level is IsolationLevel.BWRAP else " (install bubblewrap, run as root)"
        typer.echo(f"isolation: {chosen.level.label}{strongest}")
    for report in reports:
        state = "available" if report.available else "unavailable"
        typer.echo(f"  {report.level.label:<8} {state:<11} {report.reason}")
    caps = f"yes, {cgroup}" if cgroup else "no (needs root and a writable memory+pids cgroup hierarchy)"
    typer.echo(f"per-run cap on total memory and tasks: {caps}")
