"""What every request passes before a route sees it: metrics, the bearer token, the body size limit,
and errors turned into JSON bodies that say what to fix (OpenAI's error shape, so its clients read them)."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from valueagent.serve.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/health"})  # answered without a token: load balancers probe it
KNOWN_ROUTES = frozenset({"/health", "/metrics", "/v1/models", "/v1/generate", "/v1/score", "/v1/chat/completions"})


class APIError(Exception):
    """An answer other than 2xx, with a message that says what to change."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    raw = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": raw})


class CountRequests:
    """Outermost: counts every answer by route and status, refusals included."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            path = scope.get("path", "")
            self.metrics.request(path if path in KNOWN_ROUTES else "other", status, time.perf_counter() - t0)


class RequireToken:
    """With a token set, every path but ``/health`` needs ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None or scope.get("path") in OPEN_PATHS:
            return await self.app(scope, receive, send)
        auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return await self.app(scope, receive, send)
        msg = ("missing or wrong bearer token: send `Authorization: Bearer <token>` with the token the server "
               "was started with (--token or VALUEAGENT_TOKEN)")
        await _send_json(send, 401, error_body(msg, type="authentication_error", code="invalid_token"),
                         {"WWW-Authenticate": "Bearer"})


class LimitBody:
    """Reads the body up to ``max_bytes`` before the app does; a larger one gets 413 and is never parsed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                return await self.app(scope, _replay([], message, receive), send)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._refuse(send)
            chunks.append(chunk)
            more = bool(message.get("more_body"))
        await self.app(scope, _replay([b"".join(chunks)], None, receive), send)

    async def _refuse(self, send: Send) -> None:
        msg = f"request body over {self.max_bytes} bytes: send a shorter prompt (the server's --max-body-bytes)"
        await _send_json(send, 413, error_body(msg, type="invalid_request_error", code="body_too_large"))


def _replay(bodies: list[bytes], first: Message | None, receive: Receive) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": b, "more_body": False} for b in bodies]
    if first is not None:
        pending.append(first)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def describe_validation(errors: list[dict[str, Any]]) -> tuple[int, str, str | None]:
    """Status, one message naming every bad field and how to fix it, and the first bad field."""
    parts: list[str] = []
    for err in errors:
        where, kind = _where(tuple(err.get("loc", ()))), err.get("type", "")
        if kind == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            return 400, f"the request body is not valid JSON ({reason}): send one JSON object", None
        if kind == "extra_forbidden":
            parts.append(f"unknown field `{where}`: remove it (see the route's schema at /openapi.json)")
        elif kind == "missing":
            parts.append(f"`{where}` is required")
        else:
            parts.append(f"`{where}`: {err.get('msg', kind)}")
    first = errors[0].get("loc") if errors else None
    return 422, "; ".join(parts) or "invalid request", _where(tuple(first)) if first else None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, type=exc.type, param=exc.param, code=exc.code),
                            status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message, param = describe_validation(list(exc.errors()))
        return JSONResponse(error_body(message, type="invalid_request_error", param=param), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.url.path}: the routes are {', '.join(sorted(KNOWN_ROUTES))}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse(error_body(message, type="invalid_request_error"), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}", type="server_error"),
                            status_code=500)
