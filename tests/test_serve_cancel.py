"""Cancellation and shutdown. A generation whose caller is cancelled leaves the worker's batch at the next
step (in process, and over a real loopback server when the client disconnects) without changing what the
other rows generate; a cancelled queued one never starts. A `valueagent serve` process given SIGTERM
finishes the request in flight and exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.test_serve import tiny_backend
from valueagent.runtime.backend import HFBackend
from valueagent.runtime.generation import GenerationRequest
from valueagent.serve.app import ServeConfig, create_app
from valueagent.serve.launch import free_port, running

STEP_S = 0.003  # added to every forward pass, so a long generation is still running when it is cancelled
LONG = 1500  # tokens of the generation that gets cancelled
# What is asserted is how many forward passes ran (counted by the same hook), never how long anything took.


def request(tokens: int, seed: int = 0) -> GenerationRequest:
    return GenerationRequest(prompt=f"def f{seed}(x):\n    return", max_new_tokens=tokens, ignore_eos=True)


PASSES: dict[int, int] = {}
"""Forward passes run so far by each slowed backend (keyed by ``id(backend)``)."""


def passes(backend: HFBackend) -> int:
    return PASSES[id(backend)]


@pytest.fixture
def slow_backend(tiny_tokenizer: Any) -> Iterator[Callable[..., HFBackend]]:
    """Backends over the tiny model whose forward passes are counted (``passes``) and slowed by ``STEP_S``
    (hook removed after)."""
    made: list[tuple[HFBackend, Any]] = []

    def make(**kw: Any) -> HFBackend:
        backend = tiny_backend(tiny_tokenizer, prefix_cache_mb=0, **kw)
        PASSES[id(backend)] = 0

        def step(module: Any, args: Any) -> None:
            PASSES[id(backend)] += 1
            time.sleep(STEP_S)

        handle = backend.model.register_forward_pre_hook(step)
        made.append((backend, handle))
        return backend

    yield make
    for backend, handle in made:
        backend.close()
        handle.remove()


def wait_for(condition: Callable[[], bool], timeout_s: float) -> None:
    """Until ``condition()`` holds; ``timeout_s`` only guards against a hang (generous: never a measurement)."""
    t0 = time.monotonic()
    while not condition():
        assert time.monotonic() - t0 < timeout_s, "timed out"
        time.sleep(0.005)


def test_a_cancelled_row_leaves_the_batch_and_the_others_are_unchanged(slow_backend: Callable[..., HFBackend]) -> None:
    backend = slow_backend(max_batch=4)
    solo = backend.generate_sync(request(40, seed=2))

    async def scenario() -> tuple[Any, int]:
        long = asyncio.ensure_future(backend.generate(request(LONG, seed=1)))
        short = asyncio.ensure_future(backend.generate(request(40, seed=2)))
        while backend.rows_decoding < 2:
            await asyncio.sleep(0.002)
        long.cancel()
        at_cancel = passes(backend)
        with pytest.raises(asyncio.CancelledError):
            await long
        gen = await short
        while backend.rows_decoding:
            await asyncio.sleep(0.002)
        return gen, passes(backend) - at_cancel

    gen, after_cancel = asyncio.run(scenario())
    assert backend.cancelled_rows == 1
    assert after_cancel <= 45  # at most the short row's 40 steps: the long one stopped (LONG more otherwise)
    assert gen.token_ids == solo.token_ids  # fp32: the batch, and who left it, does not matter
    assert np.allclose(gen.values, solo.values, atol=1e-5)  # up to summation order
    assert backend.generate_sync(request(5)).n_tokens == 5  # the worker goes on


def test_a_cancelled_queued_generation_never_starts(slow_backend: Callable[..., HFBackend]) -> None:
    backend = slow_backend(max_batch=1)

    async def scenario() -> Any:
        first = asyncio.ensure_future(backend.generate(request(60, seed=1)))
        queued = asyncio.ensure_future(backend.generate(request(LONG, seed=2)))
        while backend.rows_decoding < 1:
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.05)  # the worker has taken the second job into its backlog by now
        queued.cancel()
        return await first

    before = passes(backend)
    assert asyncio.run(scenario()).n_tokens == 60
    wait_for(lambda: backend.rows_decoding == 0, 30.0)
    time.sleep(0.05)
    assert backend.rows_decoding == 0 and backend.cancelled_rows == 1
    assert passes(backend) - before <= 62  # the first row's prefill and 59 steps: the queued one never ran


def test_a_client_that_disconnects_cancels_its_generation(slow_backend: Callable[..., HFBackend]) -> None:
    backend = slow_backend(max_batch=4)
    cfg = ServeConfig(max_new_tokens=4096, disconnect_poll_s=0.05)
    with running(create_app(backend, cfg)) as url:
        host, port = url.removeprefix("http://").split(":")
        body = json.dumps({"prompt": "def f(x):\n    return", "max_new_tokens": LONG, "ignore_eos": True}).encode()
        head = (f"POST /v1/generate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        with socket.create_connection((host, int(port))) as client:
            client.sendall(head + body)
            wait_for(lambda: backend.rows_decoding == 1, 30.0)
        wait_for(lambda: backend.rows_decoding == 0, 60.0)
        assert backend.cancelled_rows == 1 and passes(backend) < LONG // 2  # stopped long before its end
        metrics = httpx.get(url + "/metrics").text
        assert "valueagent_requests_cancelled_total 1" in metrics
        assert "valueagent_requests_in_flight 0" in metrics
        r = httpx.post(url + "/v1/generate", json={"prompt": "x", "max_new_tokens": 3, "ignore_eos": True}, timeout=30)
        assert r.status_code == 200 and len(r.json()["values"]) == 3


@pytest.mark.slow  # a server process: its imports take most of the ~30 s
def test_sigterm_finishes_the_request_in_flight_and_exits_0(tmp_path: Path, tiny_tokenizer: Any) -> None:
    from tests.conftest import build_tiny_qwen3

    build_tiny_qwen3().save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "valueagent.cli.main", "serve", "--model", str(tmp_path), "--axis", "none",
         "--dtype", "float32", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def up() -> bool:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                return httpx.get(url + "/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 120.0)
        tokens = LONG  # a few seconds: the signal comes while it decodes
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(lambda: (httpx.post(url + "/v1/generate", timeout=120, json={
                "prompt": "def f(x):\n    return", "max_new_tokens": tokens, "ignore_eos": True}), time.monotonic()))
            wait_for(lambda: httpx.get(url + "/health", timeout=5).json()["in_flight"] == 1, 30.0)
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            r, answered = answer.result(timeout=120)
        assert answered > sent  # the request was still in flight when the signal came
        assert r.status_code == 200 and len(r.json()["token_ids"]) == tokens
        assert proc.wait(timeout=60) == 0, proc.communicate()[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
