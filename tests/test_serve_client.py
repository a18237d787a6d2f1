"""The HTTP backend over a real loopback socket: `load_backend("http://...")` gives it, the same seed gives
the same tokens and values as in process, an agent run over it keeps the same value trace, refused
requests are retried, a wrong request is a ValueError that says what to fix."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest

from tests.agent_helpers import run_agent
from tests.fakes import ScriptedSandbox
from tests.test_serve import MSGS, tiny_backend
from valueagent.agent import Budgets, GateConfig
from valueagent.runtime.backend import load_backend
from valueagent.runtime.generation import GenerationRequest
from valueagent.runtime.http import HTTPBackend, ServerError, connect_backend
from valueagent.serve.app import ServeConfig, create_app
from valueagent.serve.launch import free_port, running

REQUESTS = [
    GenerationRequest(messages=tuple(MSGS), max_new_tokens=12, ignore_eos=True),
    GenerationRequest(messages=tuple(MSGS), max_new_tokens=12, temperature=0.9, top_p=0.95, seed=11, ignore_eos=True),
    GenerationRequest(prompt="def add(a, b):", assistant_prefix="\n", max_new_tokens=8, temperature=1.0, seed=5,
                      stop=("\n\n",)),
]


@pytest.fixture(scope="module")
def served(tiny_tokenizer):
    backend = tiny_backend(tiny_tokenizer, prefix_cache_mb=0)
    with running(create_app(backend, ServeConfig(max_new_tokens=256))) as url:
        yield backend, url
    backend.close()


def test_load_backend_gives_the_http_backend(served):
    backend, url = served
    remote = load_backend(url)
    assert isinstance(remote, HTTPBackend)
    assert remote.info() == backend.info()
    assert remote.axis is not None and remote.axis.sha256 == backend.axis.sha256
    assert remote.axis_name == backend.axis_name
    remote.close()


async def test_same_seed_same_tokens_and_values_as_in_process(served):
    backend, url = served
    remote = HTTPBackend(url)
    try:
        over_http = await asyncio.gather(*(remote.generate(r) for r in REQUESTS))
        for request, got in zip(REQUESTS, over_http, strict=True):
            local = backend.generate_sync(request)
            assert got.token_ids == local.token_ids and got.text == local.text
            assert got.finish_reason == local.finish_reason and got.prompt_tokens == local.prompt_tokens
            np.testing.assert_allclose(got.values, local.values, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got.logprobs, local.logprobs, rtol=1e-5, atol=1e-6)
        scored = await remote.score(tuple(MSGS), "def f(x):\n    return sum(x)\n")
        local_scored = backend.score_sync(tuple(MSGS), "def f(x):\n    return sum(x)\n")
        assert scored.token_ids == local_scored.token_ids
        np.testing.assert_allclose(scored.values, local_scored.values, rtol=1e-5, atol=1e-6)
    finally:
        await remote.aclose()


async def test_agent_over_http_keeps_the_in_process_trace(served, tiny_tokenizer):
    _, url = served
    budgets = Budgets(tokens=64, backtracks=1, test_runs=1, revisions=1)
    gate = GateConfig(backtrack_below=-1.0, accept_above=1.0, min_tokens=1)
    kw = {"policy": "value", "gate": gate, "budgets": budgets, "segment_tokens": 16, "answer_tokens": 48, "seed": 3}
    # Two fresh backends with identical weights and no prefix reuse: the same requests give the same floats.
    served_backend = tiny_backend(tiny_tokenizer, prefix_cache_mb=0)
    local_backend = tiny_backend(tiny_tokenizer, prefix_cache_mb=0)
    try:
        with running(create_app(served_backend)) as fresh_url:
            remote = HTTPBackend(fresh_url)
            sandbox = ScriptedSandbox()
            over_http = await run_agent(remote, sandbox=sandbox, **kw)
            await remote.aclose()
        local = await run_agent(local_backend, sandbox=ScriptedSandbox(), **kw)
    finally:
        served_backend.close()
        local_backend.close()
    assert over_http["trace"] == local["trace"]
    assert any(r["value"] is not None for r in over_http["trace"])
    assert over_http["final_values"] and over_http["final_values"] == local["final_values"]
    assert over_http["completion"] == local["completion"]
    assert not sandbox.hidden  # the agent ran visible tests only


def test_options_a_server_fixed_are_refused(served):
    _, url = served
    for kw in ({"axis": "my.safetensors"}, {"axis": None}, {"device": "cpu"}, {"dtype": "float32"},
               {"quantize": "int8"}):
        with pytest.raises(ValueError, match="valueagent serve"):
            connect_backend(url, **kw)


def test_unreachable_server_says_so():
    with pytest.raises(ServerError, match="is `valueagent serve` running"):
        HTTPBackend(f"http://127.0.0.1:{free_port()}", retries=0)


async def test_a_wrong_request_is_a_value_error_that_says_what_to_fix(served):
    _, url = served
    remote = HTTPBackend(url)
    try:
        with pytest.raises(ValueError, match="over this server's limit of 256"):
            await remote.generate(GenerationRequest(prompt="x", max_new_tokens=1000))
    finally:
        await remote.aclose()


async def test_a_full_queue_is_retried_until_it_frees(tiny_tokenizer):
    backend = tiny_backend(tiny_tokenizer)
    try:
        with running(create_app(backend, ServeConfig(max_queue=1, max_new_tokens=10_000))) as url:
            long = {"prompt": "x", "max_new_tokens": 600, "ignore_eos": True}
            worker = threading.Thread(target=httpx.post, args=(url + "/v1/generate",), kwargs={"json": long,
                                                                                              "timeout": 60})
            worker.start()
            while httpx.get(url + "/health").json()["in_flight"] < 1:
                time.sleep(0.01)
            remote = HTTPBackend(url, retries=20)  # waits the server's Retry-After (1 s) between tries
            gen = await remote.generate(GenerationRequest(prompt="y", max_new_tokens=3, ignore_eos=True))
            await remote.aclose()
            worker.join()
            assert gen.n_tokens == 3
            assert 'code="429"' in httpx.get(url + "/metrics").text
    finally:
        backend.close()


def test_token_from_the_environment(tiny_tokenizer, monkeypatch):
    backend = tiny_backend(tiny_tokenizer)
    try:
        with running(create_app(backend, ServeConfig(token="s3cret"))) as url:
            monkeypatch.delenv("VALUEAGENT_TOKEN", raising=False)
            with pytest.raises(ValueError, match="VALUEAGENT_TOKEN"):
                load_backend(url)
            monkeypatch.setenv("VALUEAGENT_TOKEN", "s3cret")
            remote = load_backend(url)
            assert remote.generate_sync(GenerationRequest(prompt="x", max_new_tokens=2)).n_tokens >= 1
            remote.close()
    finally:
        backend.close()


def test_cli_run_against_a_server(served, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from tests.agent_helpers import TASK
    from valueagent.cli.main import app
    from valueagent.runner import read_results

    backend, url = served
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps(TASK.to_dict()) + "\n")
    monkeypatch.setattr("valueagent.sandbox.Sandbox", lambda workers=4: ScriptedSandbox())  # the model is real
    runner = CliRunner()
    info = runner.invoke(app, ["model", "info", "--model", url, "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.output)["model_id"] == "tiny"
    out = tmp_path / "run"
    args = ["run", str(tasks), "--policy", "value", "--model", url, "--output-dir", str(out),
            "--max-tokens", "48", "--answer-tokens", "32"]
    res = runner.invoke(app, args)  # the server's reading has no shipped calibration
    assert res.exit_code == 2 and "valueagent calibrate" in res.output and not out.exists()
    res = runner.invoke(app, [*args, "--uncalibrated"])
    assert res.exit_code == 0, res.output
    [record] = read_results(out)
    assert record["final_values"] and record["value_trace"] and record["meta"]["model"]["model_id"] == "tiny"
    res = runner.invoke(app, ["run", str(tasks), "--model", url, "--device", "cpu", "--output-dir",
                              str(tmp_path / "r2")])
    assert res.exit_code == 2 and "valueagent serve" in res.output
