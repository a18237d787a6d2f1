"""Options and helpers shared by CLI commands."""

from __future__ import annotations

from typing import NoReturn

import typer

MODEL_OPT = typer.Option("embedded", "--model", help="`embedded`, a Hugging Face model id, or a local directory.")
AXIS_OPT = typer.Option(
    "default", "--axis", help="Axis artifact path, `default` (the shipped axis for this model) or `none`."
)
DEVICE_OPT = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda if available).")
DTYPE_OPT = typer.Option(
    None, "--dtype", help="float32, bfloat16 or float16 (default: bf16 on GPU and bf16-capable CPUs, else fp32)."
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error that says how to fix it and exit with a usage-error code."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def load_backend_or_fail(
    model: str, axis: str | None, device: str | None, dtype: str | None, *, random_axis_ok: bool = False
):
    """Load a backend; turn known configuration errors into clean CLI errors.

    With ``random_axis_ok`` (benchmarks only), a model without an axis gets a seeded random direction
    so hook costs can be measured; it is labelled as such and never used as a value reading.
    """
    from valueagent.backend import load_backend

    axis_arg = None if axis in (None, "none", "") else axis
    try:
        backend = load_backend(model, axis=axis_arg, device=device, dtype=dtype)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        fail(str(exc))
    if backend.axis is None and random_axis_ok:
        import numpy as np

        from valueagent.axis.artifact import ValueAxis

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
