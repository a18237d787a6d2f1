"""CLI commands: `model info`, `generate`, `bench`."""

from __future__ import annotations

import inspect
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import typer

from valueagent.cli import checks
from valueagent.cli.common import (
    AXIS_OPT,
    BACKEND_OPT,
    DEVICE_OPT,
    DTYPE_OPT,
    MODEL_OPT,
    QUANTIZE_OPT,
    fail,
    load_backend_or_fail,
)

if TYPE_CHECKING:
    from valueagent.runtime.generation import TokenEvent

model_app = typer.Typer(help="Inspect the model.", no_args_is_help=True)

_BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """A unicode sparkline scaled to the trace's own range."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(_BARS[1 + int((v - lo) / span * (len(_BARS) - 2))] for v in values)


@model_app.command("info")
def info(
    model: str = MODEL_OPT,
    axis: str = AXIS_OPT,
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    quantize: str | None = QUANTIZE_OPT,
    engine: str = BACKEND_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Model id, layers, hidden size, dtype (the arithmetic), weights (their precision as loaded: the embedded
    models are Q4_K_M GGUFs dequantized at load), device, the value axis, the value head shipped beside it
    (`--axis head` reads it instead) and what the backend can do."""
    from valueagent.runtime.artifact import load_axis, shipped_head_path

    checks.axis(axis, model=model)
    backend = load_backend_or_fail(model, axis, device, dtype, quantize=quantize, engine=engine)
    data: dict[str, Any] = asdict(backend.info())
    head = shipped_head_path(data["model_id"])
    data["shipped_head"] = None if head is None else _head_summary(load_axis(head))
    if as_json:
        typer.echo(json.dumps(data))
    else:
        for k, v in data.items():
            typer.echo(f"{k:>12}: {v if v is not None else '(none)'}")
        if not backend.info().has_axis:
            typer.echo(f"no value axis is loaded: values will be empty; {checks.no_axis_fix(model, backend.info())}",
                       err=True)


def _head_summary(head: Any) -> str:
    """One line on a shipped value head: what it is and how it did on the test split it was judged on."""
    tests = (head.validation or {}).get("tests") or {}
    judged = "; ".join(f"{name}: within-task AUROC {t['within_task_auroc']:.3f}, best of N untested "
                       f"{100 * t['best_of_n']:.1f}%" for name, t in tests.items())
    return (f"{(head.validation or {}).get('head', {}).get('name', head.estimator)} at layer {head.layer} "
            f"(sha256 {head.sha256[:12]}; --axis head){'; ' + judged if judged else ''}")


def generate(
    prompt: str = typer.Argument(..., help="Prompt text (sent as a user chat turn unless --raw)."),
    model: str = MODEL_OPT,
    axis: str = AXIS_OPT,
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    quantize: str | None = QUANTIZE_OPT,
    engine: str = BACKEND_OPT,
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1),
    steer: float = typer.Option(0.0, "--steer", help="Steering as a fraction of the mean residual norm "
                                "(0.168 = 16.8%; at most ±1)."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0),
    seed: int = typer.Option(0, "--seed"),
    raw: bool = typer.Option(False, "--raw", help="Treat PROMPT as raw text, not a chat message."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Generate text and show the value reading of every generated token."""
    from valueagent.runtime.generation import GenerationRequest

    checks.steer(steer)
    checks.axis(axis, model=model)
    backend = load_backend_or_fail(model, axis, device, dtype, quantize=quantize, engine=engine)
    if steer != 0 and backend.axis is None:
        fail("--steer needs a value axis, and none is loaded for this model: pass --axis PATH")
    req = GenerationRequest(
        messages=None if raw else ({"role": "user", "content": prompt},),
        prompt=prompt if raw else None,
        max_new_tokens=max_new_tokens,
        steer=steer,
        temperature=temperature,
        seed=seed,
    )
    stream = TokenStream(max_new_tokens, show_text=not as_json)
    streaming = "on_token" in inspect.signature(backend.generate_sync).parameters  # the HTTP backend: no
    with stream:
        gen = backend.generate_sync(req, on_token=stream.on_token) if streaming else backend.generate_sync(req)
    backend.close()
    tokens = stream.pieces(gen.text) if streaming else None
    at_limit = gen.finish_reason == "length"
    if as_json:
        out = {
            "text": gen.text,
            "n_tokens": gen.n_tokens,
            "tokens": tokens,  # the text of each generated token, beside its value (they join to `text`)
            "token_ids": list(gen.token_ids),
            "values": gen.values,
            "logprobs": gen.logprobs,
            "layer": gen.layer,
            "steer": gen.steer,
            "finish_reason": gen.finish_reason,
            "stopped_at_token_limit": at_limit,
            "model_id": backend.model_id,
            "axis": backend.axis_name,
        }
        typer.echo(json.dumps(out))
    else:
        if not streaming:
            typer.echo(gen.text)
        elif tokens is not None and (rest := gen.text[len("".join(stream.texts)):]):
            stream.write(rest)
        typer.echo("")
    if at_limit:
        typer.secho(f"stopped at the token limit ({gen.n_tokens} tokens, --max-new-tokens {max_new_tokens}): the "
                    "text may be cut short; raise --max-new-tokens for more", fg=typer.colors.YELLOW, err=True)
    if as_json:
        return
    if not gen.values:
        typer.echo("(no value axis loaded: no value trace; pass --axis PATH)", err=True)
        return
    mean = sum(gen.values) / len(gen.values)
    typer.echo(
        f"value @ layer {gen.layer} ({gen.n_tokens} tokens, mean {mean:+.4f}, "
        f"min {min(gen.values):+.4f}, max {max(gen.values):+.4f}, steer {steer:+.3f})",
        err=True,
    )
    typer.echo(sparkline(gen.values), err=True)


class TokenStream:
    """``generate``'s live output. Each token's text goes to stdout as it comes (``show_text``); on a terminal
    the text is redrawn with a status line under it (the live value, a sparkline of the last values, tokens so
    far of the limit), and with ``--json`` that status line alone is shown on stderr. ``on_token`` runs on the
    decoding thread."""

    def __init__(self, limit: int, *, show_text: bool) -> None:
        from rich.console import Console

        self.limit, self.show_text = limit, show_text
        self.texts: list[str] = []
        self.values: list[float] = []
        self._out, self._err = Console(), Console(stderr=True)
        self._live: Any = None
        self._status: Any = None

    def __enter__(self) -> TokenStream:
        if self.show_text and self._out.is_terminal:
            from rich.live import Live

            self._live = Live(console=self._out, refresh_per_second=8, vertical_overflow="visible")
            self._live.__enter__()
        elif not self.show_text and self._err.is_terminal:
            self._status = self._err.status("generating", spinner="dots")
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text("".join(self.texts)), refresh=True)  # the status line goes, the text stays
            self._live.__exit__(*exc)
        if self._status is not None:
            self._status.__exit__(*exc)

    def write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def status(self) -> str:
        """Tokens so far of the limit, and the newest value with a sparkline of the last ones."""
        value = f"  value {self.values[-1]:+.4f} {sparkline(self.values[-32:])}" if self.values else ""
        return f"{len(self.texts)}/{self.limit} tokens{value}"

    def on_token(self, event: TokenEvent) -> None:
        self.texts.append(event.text)
        if event.value is not None:
            self.values.append(event.value)
        if self._live is not None:
            from rich.console import Group
            from rich.text import Text

            self._live.update(Group(Text("".join(self.texts)), Text(self.status(), style="dim")))
        elif self.show_text:
            self.write(event.text)
        if self._status is not None:
            self._status.update(self.status())

    def pieces(self, text: str) -> list[str]:
        """The tokens' texts, the last one completed so that they join to ``text``."""
        pieces = list(self.texts)
        rest = text[len("".join(pieces)):] if text.startswith("".join(pieces)) else ""
        if pieces and rest:
            pieces[-1] += rest
        return pieces


def bench(
    model: str = MODEL_OPT,
    axis: str = AXIS_OPT,
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    quantize: str | None = QUANTIZE_OPT,
    engine: str = BACKEND_OPT,
    tokens: int = typer.Option(64, "--tokens", min=8, help="Tokens decoded per measurement."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Interleaved repeats; medians are reported."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Decode throughput: plain, reading values, reading + steering, and 1 vs 4 concurrent requests."""
    from valueagent.runtime.benchmark import run_bench

    backend = load_backend_or_fail(model, axis, device, dtype, random_axis_ok=True, quantize=quantize,
                                   engine=engine)
    report = run_bench(backend, tokens=tokens, repeats=repeats, progress=lambda m: print(m, file=sys.stderr))
    backend.close()
    if as_json:
        typer.echo(json.dumps(report))
    else:
        for k, v in report.items():
            typer.echo(f"{k:>28}: {v}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(model_app, name="model")
    app.command("generate")(generate)
    app.command("bench")(bench)
