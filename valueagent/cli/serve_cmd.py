"""CLI command: `serve` — the model and its value reading over HTTP (see docs/serving.md)."""

from __future__ import annotations

import typer

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


def serve(
    model: str = MODEL_OPT,
    axis: str = AXIS_OPT,
    device: str | None = DEVICE_OPT,
    dtype: str | None = DTYPE_OPT,
    quantize: str | None = QUANTIZE_OPT,
    engine: str = BACKEND_OPT,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. Anything but loopback needs --token."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    token: str | None = typer.Option(None, "--token", envvar="VALUEAGENT_TOKEN", show_envvar=True,
                                     help="Bearer token every route but /health requires."),
    max_batch: int = typer.Option(16, "--max-batch", min=1, help="Rows the worker decodes together."),
    max_queue: int = typer.Option(256, "--max-queue", min=1, help="Requests in flight before new ones get 429."),
    max_new_tokens: int = typer.Option(4096, "--max-new-tokens", min=1, help="Largest max_new_tokens accepted."),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", min=1024, help="Largest request body."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve POST /v1/generate, /v1/score and /v1/chat/completions (OpenAI-compatible), with one value per
    generated token, plus GET /health, /v1/models and /metrics."""
    if model.startswith(("http://", "https://")):
        fail("serve loads a model in this process: give a model id, path or `embedded*`, not a URL")
    try:
        from valueagent.serve.app import ServeConfig, create_app
        from valueagent.serve.launch import check_bind
        from valueagent.serve.launch import serve as run_server
    except ImportError as exc:
        fail(f"serving needs fastapi and uvicorn ({exc.name} is missing): pip install 'valueagent[serve]'")
    try:
        check_bind(host, token)
    except ValueError as exc:
        fail(str(exc))
    backend = load_backend_or_fail(model, axis, device, dtype, max_batch=max_batch, quantize=quantize,
                                   engine=engine)
    config = ServeConfig(aliases=(model,), token=token or None, max_new_tokens=max_new_tokens, max_queue=max_queue,
                         max_body_bytes=max_body_bytes)
    try:
        run_server(create_app(backend, config), host=host, port=port, token=token, log_level=log_level)
    finally:
        backend.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
