"""The HTTP server: one value-reading backend shared by every client.

Requests are not serialised: each route awaits ``backend.generate`` / ``backend.score``, and the backend's
worker batches whatever is in flight, exactly as for in-process callers. ``/v1/generate`` with ``stream``
sends each token's event as the worker decodes it when the backend calls back per token (the in-process
one: ``X-Valueagent-Stream: live``); otherwise, and for ``/v1/chat/completions``, the events of a request
are sent when its generation ends (``X-Valueagent-Stream: after-generation``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from valueagent import __version__
from valueagent.runtime.generation import Generation, GenerationRequest, TokenEvent, ValueBackend
from valueagent.runtime.wire import from_json, to_json
from valueagent.serve import openai_compat as oa
from valueagent.serve.guards import APIError, CountRequests, LimitBody, RequireToken, install_error_handlers
from valueagent.serve.metrics import Metrics
from valueagent.serve.schemas import (
    ChatBody,
    ChatCompletion,
    GenerateBody,
    GenerationOut,
    Health,
    ModelList,
    ScoreBody,
    ScoredOut,
)

T = TypeVar("T")
STREAM_HEADERS = {"X-Valueagent-Stream": "after-generation", "Cache-Control": "no-cache"}
LIVE_HEADERS = {"X-Valueagent-Stream": "live", "Cache-Control": "no-cache"}


def streams_live(backend: ValueBackend) -> bool:
    """Whether the backend calls back per token as it decodes (the in-process one does; HTTP and Ray do not)."""
    import inspect

    return "on_token" in inspect.signature(backend.generate).parameters


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """Limits of a server. ``aliases``: names accepted in ``model`` besides the backend's model id (the
    spec it was loaded from, e.g. ``embedded``). ``max_queue``: model requests in flight beyond which new
    ones get 429. ``token``: required as a bearer token on every route but ``/health`` when set."""

    aliases: tuple[str, ...] = ()
    token: str | None = None
    max_new_tokens: int = 4096
    default_max_tokens: int = 256
    max_queue: int = 256
    max_body_bytes: int = 1 << 20
    disconnect_poll_s: float = 0.5


def axis_summary(backend: Any) -> dict[str, Any] | None:
    """The loaded axis artifact's identity and validation figures (what a run's config records)."""
    axis = getattr(backend, "axis", None)
    if axis is None or not hasattr(axis, "sha256"):
        return None
    keys = ("sha256", "layer", "model_id", "estimator", "data_hash", "validation")
    return {"name": getattr(backend, "axis_name", None), **{k: getattr(axis, k, None) for k in keys}}


def create_app(backend: ValueBackend, config: ServeConfig | None = None, *, max_batch: int | None = None) -> FastAPI:
    """A FastAPI app serving ``backend``. ``max_batch`` (default: the backend's own) sizes the batch
    metrics. The app does not close the backend: whoever made it does."""
    cfg = config or ServeConfig()
    info = backend.info()
    names = {info.model_id, *cfg.aliases}
    metrics = Metrics(max_batch=max_batch or int(getattr(backend, "max_batch", 1)))
    started_at = int(time.time())
    app = FastAPI(title="valueagent", version=__version__, docs_url=None, redoc_url=None)
    app.state.metrics = metrics
    install_error_handlers(app)
    # Added last = outermost: metrics see every answer, the token is checked before a body is read.
    app.add_middleware(LimitBody, max_bytes=cfg.max_body_bytes)
    app.add_middleware(RequireToken, token=cfg.token)
    app.add_middleware(CountRequests, metrics=metrics)

    def check_model(name: str | None) -> None:
        if name is not None and name not in names:
            raise APIError(404, f"model {name!r} is not served here: use {' or '.join(map(repr, sorted(names)))} "
                           "(GET /v1/models)", type="not_found_error", param="model", code="model_not_found")

    def check_tokens(n: int, param: str) -> None:
        if n > cfg.max_new_tokens:
            raise APIError(422, f"`{param}` is {n}, over this server's limit of {cfg.max_new_tokens} "
                           "(valueagent serve --max-new-tokens): ask for fewer", param=param)

    @asynccontextmanager
    async def admitted() -> AsyncIterator[dict[str, int]]:
        if metrics.in_flight >= cfg.max_queue:
            metrics.rejected += 1
            raise APIError(429, f"the server is full ({metrics.in_flight} requests in flight, limit "
                           f"{cfg.max_queue}): retry after the Retry-After seconds", type="rate_limit_error",
                           code="queue_full", headers={"Retry-After": "1"})
        metrics.started()
        counts: dict[str, int] = {}
        try:
            yield counts
        finally:
            metrics.finished(**counts)

    async def until_done(request: Request, work: Awaitable[T]) -> T:
        """Await the backend; a client that leaves cancels its request: a queued one never starts, a decoding
        one leaves the worker's batch at its next step (checked every ``disconnect_poll_s``)."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=cfg.disconnect_poll_s)
                if done:
                    break
                if await request.is_disconnected():
                    task.cancel()
                    metrics.cancelled += 1
                    raise APIError(499, "client disconnected", code="client_closed")
            return task.result()
        except ValueError as exc:  # the backend's own check of the request (e.g. steering without an axis)
            raise APIError(422, str(exc)) from exc
        except RuntimeError as exc:
            if "closed" in str(exc):
                raise APIError(503, "the server is shutting down: retry on another replica",
                               type="server_error", code="shutting_down") from exc
            raise
        finally:
            if not task.done():
                task.cancel()

    async def generate(request: Request, req: GenerationRequest) -> Generation:
        async with admitted() as counts:
            gen = await until_done(request, backend.generate(req))
            counts.update(prompt_tokens=gen.prompt_tokens, generated_tokens=gen.n_tokens)
        return gen

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": info.model_id, "in_flight": metrics.in_flight}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", response_model=ModelList)
    async def models() -> dict[str, Any]:
        card = {"info": to_json(info), "aliases": sorted(names - {info.model_id}), "axis": axis_summary(backend),
                "max_new_tokens": cfg.max_new_tokens}
        return {"object": "list", "data": [{"id": info.model_id, "object": "model", "created": started_at,
                                            "owned_by": "valueagent", "valueagent": card}]}

    @app.post("/v1/generate", response_model=GenerationOut,
              responses={200: {"content": {"text/event-stream": {}}}})
    async def generate_route(body: GenerateBody, request: Request) -> Any:
        check_model(body.model)
        check_tokens(body.max_new_tokens, "max_new_tokens")
        try:
            req = from_json(GenerationRequest, body.model_dump(exclude={"model", "stream"}))
        except ValueError as exc:
            raise APIError(422, str(exc)) from exc
        if body.stream and streams_live(backend):
            return StreamingResponse(live_events(req), media_type="text/event-stream", headers=LIVE_HEADERS)
        data = to_json(await generate(request, req))
        if body.stream:
            return StreamingResponse(_token_events(data), media_type="text/event-stream", headers=STREAM_HEADERS)
        return data

    async def live_events(req: GenerationRequest) -> AsyncIterator[bytes]:
        """Each token's event as the worker decodes it (value, log-prob, text), then the whole generation.
        A client that leaves closes this generator, which cancels the generation."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[TokenEvent] = asyncio.Queue()

        def on_token(ev: TokenEvent) -> None:  # the decoding thread
            loop.call_soon_threadsafe(queue.put_nowait, ev)

        def event(ev: TokenEvent) -> bytes:
            return oa.sse({"type": "token", "index": ev.index, "token": ev.text, "token_id": ev.token_id,
                           "value": ev.value, "logprob": ev.logprob})

        async with admitted() as counts:
            task = asyncio.ensure_future(backend.generate(req, on_token=on_token))  # type: ignore[call-arg]
            try:
                while not task.done():
                    getter = asyncio.ensure_future(queue.get())
                    await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                    if getter.done():
                        yield event(getter.result())
                    else:
                        getter.cancel()
                while not queue.empty():
                    yield event(queue.get_nowait())
                try:
                    gen = task.result()
                except ValueError as exc:
                    yield oa.sse({"type": "error", "error": {"message": str(exc), "code": 422}})
                    return
                counts.update(prompt_tokens=gen.prompt_tokens, generated_tokens=gen.n_tokens)
                data = to_json(gen)
                n = gen.n_tokens
                rest = {k: v for k, v in data.items() if not (isinstance(v, list) and len(v) == n)}
                yield oa.sse({"type": "done", "n_tokens": n, "streamed": "live", **rest, **{
                    k: v for k, v in data.items() if isinstance(v, list) and len(v) == n}})
                yield b"data: [DONE]\n\n"
            finally:
                if not task.done():
                    task.cancel()
                    metrics.cancelled += 1

    @app.post("/v1/score", response_model=ScoredOut)
    async def score_route(body: ScoreBody, request: Request) -> dict[str, Any]:
        check_model(body.model)
        async with admitted():
            scored = await until_done(request, backend.score(tuple(m.model_dump() for m in body.messages),
                                                             body.completion))
        return to_json(scored)

    @app.post("/v1/chat/completions", response_model=ChatCompletion,
              responses={200: {"content": {"text/event-stream": {}}}})
    async def chat_route(body: ChatBody, request: Request) -> Any:
        check_model(body.model)
        param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
        max_new = body.max_completion_tokens or body.max_tokens or cfg.default_max_tokens
        check_tokens(max_new, param)
        if body.top_logprobs:
            raise APIError(422, "`top_logprobs` is not served yet: leave it at 0 (each token's own log-prob "
                           "comes with `logprobs: true` and in `valueagent.logprobs`)", param="top_logprobs")
        req = oa.chat_request(body, max_new_tokens=max_new)
        gen = await generate(request, req)
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            events = oa.chunks(gen, req, model=info.model_id, axis=info.axis, include_usage=include_usage)
            return StreamingResponse(events, media_type="text/event-stream", headers=STREAM_HEADERS)
        return oa.completion(gen, req, model=info.model_id, axis=info.axis, logprobs=body.logprobs)

    return app


def _token_events(data: dict[str, Any]) -> Iterator[bytes]:
    """``/v1/generate`` streaming: ``{"type": "token", "index", "token", "token_id", "value", "logprob", ...}``
    per generated token, then ``{"type": "done", ...}`` with everything that is not per token."""
    n = len(data.get("token_ids", []))
    for i, tok in enumerate(oa.per_token(data, n)):
        yield oa.sse({"type": "token", "index": i, **tok})
    rest = {k: v for k, v in data.items() if not (isinstance(v, list) and len(v) == n)}
    yield oa.sse({"type": "done", "n_tokens": n, "streamed": "after-generation", **rest})
    yield b"data: [DONE]\n\n"
