"""Root of the `valueagent` CLI: each command group lives in its own module."""

from __future__ import annotations

import typer

from valueagent import __version__
from valueagent.cli import agent_cmd, axis_cmd, bank_cmd, eval_cmd, model_cmd, sandbox_cmd, serve_cmd
from valueagent.cli.common import OneLineErrors, set_debug

app = typer.Typer(
    name="valueagent",
    help="Read a model's value axis during generation, steer along it, and gate a coding agent on it.",
    no_args_is_help=True,
    add_completion=False,
    cls=OneLineErrors,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"valueagent {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback behind an error."),
    plugin: list[str] = typer.Option(  # noqa: B008 - typer's way to declare a repeatable option
        [], "--plugin", help="Import MODULE first: policies it registers (register_policy) become usable by run, "
        "eval and calibrate. Repeatable; also $VALUEAGENT_PLUGINS (comma-separated) and the "
        "`valueagent.policies` entry points."),
) -> None:
    """valueagent command line."""
    set_debug(debug)
    from valueagent.cli.checks import plugins

    plugins(plugin)


model_cmd.register(app)
sandbox_cmd.register(app)
axis_cmd.register(app)
agent_cmd.register(app)
eval_cmd.register(app)
serve_cmd.register(app)
bank_cmd.register(app)

if __name__ == "__main__":
    app()
