"""Options and helpers shared by CLI commands."""

from __future__ import annotations

import sys
import traceback
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup
from typer.exceptions import Abort, Exit, TyperException

MODEL_OPT = typer.Option("embedded", "--model", help="`embedded` (Qwen2.5-Coder-0.5B), `embedded-1.5b` (needs the "
                         "coder-1-5b extra), a Hugging Face model id, a local directory, or http://HOST:PORT "
                         "(a `valueagent serve` server).")
AXIS_OPT = typer.Option(
    "default", "--axis", help="Axis artifact path, `default` (the shipped contrastive axis for this model), `head` "
    "(its shipped value head: a probe trained on its own MBPP attempts) or `none`."
)
DEVICE_OPT = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if available).")
DTYPE_OPT = typer.Option(
    None, "--dtype", help="float32, bfloat16 or float16 (default: bf16 on GPU and bf16-capable CPUs, else fp32)."
)
QUANTIZE_OPT = typer.Option(
    None, "--quantize", help="int8: decode through int8 linear layers (CPU, ~2-3x faster decoding; "
    "prompts stay float32; see valueagent.runtime.quant). Default: off."
)
BACKEND_OPT = typer.Option(
    "auto", "--backend", help="The engine of a local model: llama (llama.cpp over the GGUF: the embedded models and "
    ".gguf files), hf (transformers), auto (llama where it can serve the model as asked: no --quantize, --dtype or "
    "--device; else hf). Recorded in config.json and bank manifests."
)

# Budgets and pools shared by `run` and `eval humaneval` (the same defaults as agent.state.Budgets).
MAX_BACKTRACKS_OPT = typer.Option(2, "--max-backtracks", min=0, help="Backtracks per task.")
MAX_TEST_RUNS_OPT = typer.Option(3, "--max-test-runs", min=0, help="Visible-test runs per task.")
MAX_REVISIONS_OPT = typer.Option(2, "--max-revisions", min=0, help="Revisions per task.")
MAX_TOKENS_OPT = typer.Option(2048, "--max-tokens", min=1, help="Generated tokens per task.")
ANSWER_TOKENS_OPT = typer.Option(512, "--answer-tokens", min=1, help="Longest answer.")
WORKERS_OPT = typer.Option(4, "--workers", min=1, help="Sandbox worker processes.")
PREFIX_CACHE_OPT = typer.Option(
    1024, "--prefix-cache-mb", min=0, help="MB of finished rows' keys and values kept to reuse prompt prefixes "
    "(an agent's later turns repeat its earlier ones). 0 turns reuse off and frees that memory."
)


_DEBUG = {"on": False}


def set_debug(on: bool) -> None:
    """``--debug``: errors also print the traceback of the exception behind them."""
    _DEBUG["on"] = on


def one_line(text: object) -> str:
    """``text`` on one line (multi-line library messages included)."""
    return " ".join(str(text).split())


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error that says how to fix it, on one line, and exit with a usage-error code.

    Called while handling an exception, ``--debug`` prints that exception's traceback first.
    """
    if _DEBUG["on"] and sys.exc_info()[1] is not None:
        traceback.print_exc()
    typer.secho(f"error: {one_line(message)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


class OneLineErrors(TyperGroup):
    """The root command group: an unexpected exception ends in one line (exit 1), its traceback only under
    ``--debug``. Input errors never get here: they are checked first and end in :func:`fail` (exit 2)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (Exit, Abort, TyperException):
            raise
        except Exception as exc:
            if _DEBUG["on"]:
                raise
            typer.secho(f"error: {type(exc).__name__}: {one_line(exc)} (unexpected: rerun with --debug for the "
                        "traceback, and report it)", fg=typer.colors.RED, err=True)
            raise Exit(1) from None


def check_engine(model: str, backend: str, *, quantize: str | None = None, device: str | None = None,
           dtype: str | None = None) -> None:
    """``--backend`` against the model and the other model options: one line naming the fix, before anything
    loads (``auto`` always resolves; an ``http://`` model runs whatever its server runs)."""
    from valueagent.runtime.backend import resolve_engine, scheme_of

    if scheme_of(model) != "local":
        if backend != "auto":
            fail(f"--backend {backend} applies to local models; the server at {model} runs its own")
        return
    try:
        resolve_engine(model, backend, quantize=quantize, device=device, dtype=dtype)
    except ValueError as exc:
        fail(str(exc))


def load_backend_or_fail(
    model: str, axis: str | None, device: str | None, dtype: str | None, *, random_axis_ok: bool = False,
    max_batch: int = 8, quantize: str | None = None, prefix_cache_mb: int = 1024, engine: str = "auto",
) -> Any:  # what valueagent.runtime.backend.load_backend returns (in-process or HTTP backend)
    """Load a backend; turn known configuration errors into clean CLI errors. ``max_batch``: rows decoded
    together (commands running C tasks at once pass ``max(8, C)`` so every task in flight can join).

    With ``random_axis_ok`` (benchmarks only), a model without an axis gets a seeded random direction
    so hook costs can be measured; it is labelled as such and never used as a value reading.
    """
    from valueagent.runtime.backend import load_backend

    check_engine(model, engine, quantize=quantize, device=device, dtype=dtype)
    axis_arg = None if axis in (None, "none", "") else axis
    try:
        backend: Any = load_backend(model, axis=axis_arg, device=device, dtype=dtype, max_batch=max_batch,
                               quantize=quantize, prefix_cache_mb=prefix_cache_mb, backend=engine)
    except (ValueError, FileNotFoundError, RuntimeError, OSError, ImportError) as exc:
        fail(str(exc))
    if backend.axis is None and random_axis_ok:
        import numpy as np

        from valueagent.runtime.artifact import ValueAxis

        info = backend.info()
        rng = np.random.default_rng(0)
        backend.axis = ValueAxis(
            direction=rng.standard_normal(info.hidden_size).astype(np.float32),
            layer=max(1, info.num_layers * 7 // 12),
            model_id=info.model_id,
            hidden_size=info.hidden_size,
            num_layers=info.num_layers,
            estimator="random (benchmark only, not a value axis)",
        )
        backend.axis_name = "random-benchmark-direction"
    return backend
