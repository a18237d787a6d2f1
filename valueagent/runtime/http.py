"""The HTTP backend: :class:`~valueagent.runtime.generation.ValueBackend` over a ``valueagent serve`` server.

Requests and results travel as the dataclasses' own fields (:mod:`valueagent.runtime.wire`), so a run
against ``--model http://HOST:PORT`` records what an in-process run records. Retries: every
``GenerationRequest`` carries its seed (and greedy decoding needs none), so sending one again gives the
same tokens and values; a request is retried when the server refused it (429, 502-504) or the connection
failed, a few times with backoff. An answer the server gave (a 4xx that names a bad field) is never retried.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from valueagent.runtime.generation import Generation, GenerationRequest, Message, ModelInfo, Scored
from valueagent.runtime.wire import from_json, to_json

TOKEN_ENV = "VALUEAGENT_TOKEN"
RETRY_STATUS = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class RemoteAxis:
    """The identity of the axis a server reads (its direction stays on the server)."""

    sha256: str | None
    layer: int
    model_id: str | None = None
    estimator: str | None = None
    data_hash: str | None = None
    validation: dict[str, Any] = field(default_factory=dict)


class ServerError(RuntimeError):
    """The server failed or stayed unavailable after the retries."""


class HTTPBackend:
    """A value-reading backend on a server. ``info()`` is fetched once, when connecting.

    ``timeout_s`` bounds one request (a long generation on a busy server takes minutes);
    ``max_connections`` bounds the connections open at once (requests beyond it wait for one).
    """

    def __init__(self, base_url: str, *, token: str | None = None, timeout_s: float = 900.0,
                 connect_timeout_s: float = 10.0, max_connections: int = 64, retries: int = 4,
                 backoff_s: float = 0.5) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.retries, self.backoff_s = retries, backoff_s
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sync = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=self._timeout)
        card = self._sync_call("GET", "/v1/models", None)["data"][0]["valueagent"]
        self._info = from_json(ModelInfo, card["info"])
        self.max_new_tokens = int(card.get("max_new_tokens") or 0) or None
        axis = card.get("axis")
        self.axis = RemoteAxis(**{k: v for k, v in axis.items() if k != "name"}) if axis else None
        self.axis_name: str | None = axis.get("name") if axis else self._info.axis
        self.model_id = self._info.model_id

    # -- ValueBackend ------------------------------------------------------------------------------
    def info(self) -> ModelInfo:
        return self._info

    async def generate(self, request: GenerationRequest) -> Generation:
        return from_json(Generation, await self._call("/v1/generate", self._generate_body(request)))

    async def score(self, messages: tuple[Message, ...], completion: str) -> Scored:
        body = {"model": self.model_id, "messages": [dict(m) for m in messages], "completion": completion}
        return from_json(Scored, await self._call("/v1/score", body))

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None
        self.close()

    # -- blocking forms (the `generate` and `model info` commands) ---------------------------------
    def generate_sync(self, request: GenerationRequest) -> Generation:
        return from_json(Generation, self._sync_call("POST", "/v1/generate", self._generate_body(request)))

    def score_sync(self, messages: tuple[Message, ...], completion: str) -> Scored:
        body = {"model": self.model_id, "messages": [dict(m) for m in messages], "completion": completion}
        return from_json(Scored, self._sync_call("POST", "/v1/score", body))

    def close(self) -> None:
        self._sync.close()

    # -- transport ---------------------------------------------------------------------------------
    def _generate_body(self, request: GenerationRequest) -> dict[str, Any]:
        return {**to_json(request), "model": self.model_id}

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # a client belongs to the loop that made it
            self._client = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=self._timeout,
                                             limits=self._limits)
            self._loop = loop
        return self._client

    async def _call(self, path: str, body: dict[str, Any]) -> Any:
        client = self._async_client()
        for attempt in range(self.retries + 1):
            try:
                response = await client.post(path, json=body)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise ServerError(f"{self.base_url}{path}: {type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(self._delay(attempt, None))
                continue
            if response.status_code in RETRY_STATUS and attempt < self.retries:
                await asyncio.sleep(self._delay(attempt, response))
                continue
            return self._result(path, response)
        raise AssertionError("unreachable")

    def _sync_call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = self._sync.request(method, path, json=body)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise ServerError(f"cannot reach {self.base_url}{path} ({type(exc).__name__}: {exc}): is "
                                      "`valueagent serve` running there?") from exc
                time.sleep(self._delay(attempt, None))
                continue
            if response.status_code in RETRY_STATUS and attempt < self.retries:
                time.sleep(self._delay(attempt, response))
                continue
            return self._result(path, response)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        after = response.headers.get("retry-after", "") if response is not None else ""
        return float(after) if after.replace(".", "", 1).isdigit() else self.backoff_s * 2**attempt

    def _result(self, path: str, response: httpx.Response) -> Any:
        if response.is_success:
            return response.json()
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        where = f"{self.base_url}{path} answered {response.status_code}"
        if response.status_code == 401:
            raise ValueError(f"{where}: {message} (the client reads the token from {TOKEN_ENV})")
        if 400 <= response.status_code < 500 and response.status_code not in RETRY_STATUS:
            raise ValueError(f"{where}: {message}")  # the request itself is wrong, as in process
        raise ServerError(f"{where}: {message}")


def connect_backend(url: str, *, axis: str | None = "default", device: str | None = None, dtype: str | None = None,
                    quantize: str | None = None, token: str | None = None) -> HTTPBackend:
    """An :class:`HTTPBackend` for ``url``, refusing options that only a server can honour (its model, axis,
    device, dtype and quantization were fixed when it started). The token defaults to ``$VALUEAGENT_TOKEN``."""
    fixed = {"--axis": axis if axis != "default" else None, "--device": device, "--dtype": dtype,
             "--quantize": quantize}
    given = [k for k, v in fixed.items() if v is not None]
    if axis is None:
        given.insert(0, "--axis none")
    if given:
        raise ValueError(f"{', '.join(given)} cannot apply to a server ({url}): it loaded its model and axis when it "
                         "started; pass these to `valueagent serve` instead")
    return HTTPBackend(url, token=token if token is not None else os.environ.get(TOKEN_ENV) or None)
