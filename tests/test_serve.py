"""`valueagent serve` as a real server on loopback (uvicorn in a thread) over the tiny random Qwen3: both
routes give one value per generated token, equal to the in-process reading; bad input gets a 4xx that says
what to fix and the server keeps serving; a full queue gets 429; a token guards non-loopback use."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from valueagent.runtime.artifact import ValueAxis
from valueagent.runtime.backend import HFBackend
from valueagent.runtime.generation import GenerationRequest
from valueagent.runtime.wire import to_json
from valueagent.serve.app import ServeConfig, create_app
from valueagent.serve.launch import check_bind, running
from valueagent.serve.schemas import GenerateBody

MSGS = [{"role": "user", "content": "Write a function that returns the sum of a list."}]
PER_TOKEN = ("tokens", "token_ids", "values", "logprobs", "entropies")


def tiny_backend(tokenizer, **kw) -> HFBackend:
    from tests.conftest import build_tiny_qwen3

    model = build_tiny_qwen3()
    h = model.config.hidden_size
    axis = ValueAxis(direction=np.random.default_rng(1).standard_normal(h).astype(np.float32), layer=2,
                     model_id="tiny", hidden_size=h, num_layers=model.config.num_hidden_layers, estimator="test")
    return HFBackend(model, tokenizer, model_id="tiny", axis=axis, axis_name="test-axis", **kw)


@pytest.fixture(scope="module")
def backend(tiny_tokenizer):
    b = tiny_backend(tiny_tokenizer, max_batch=8)
    yield b
    b.close()


@pytest.fixture(scope="module")
def url(backend):
    cfg = ServeConfig(aliases=("tiny-alias",), max_new_tokens=512, max_body_bytes=64 * 1024)
    with running(create_app(backend, cfg)) as base:
        yield base


def post(url: str, path: str, body=None, **kw) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=60, **kw)


def assert_per_token(data: dict) -> int:
    n = len(data["token_ids"])
    assert n > 0
    for key in PER_TOKEN:
        if key in data:
            assert len(data[key]) == n, key
    return n


def test_health_models_and_metrics(url):
    assert httpx.get(url + "/health").json()["status"] == "ok"
    card = httpx.get(url + "/v1/models").json()["data"][0]
    assert card["id"] == "tiny" and card["valueagent"]["info"]["axis_layer"] == 2
    assert card["valueagent"]["axis"]["sha256"] and "tiny-alias" in card["valueagent"]["aliases"]
    text = httpx.get(url + "/metrics").text
    for name in ("valueagent_requests_total", "valueagent_generated_tokens_total", "valueagent_queue_depth",
                 "valueagent_batch_size_bucket", "valueagent_requests_in_flight"):
        assert name in text


def test_generate_equals_in_process(url, backend):
    body = {"messages": MSGS, "max_new_tokens": 10, "temperature": 0.8, "top_p": 0.9, "seed": 7,
            "ignore_eos": True}
    r = post(url, "/v1/generate", body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert assert_per_token(data) == 10
    local = backend.generate_sync(GenerationRequest(messages=tuple(MSGS), max_new_tokens=10, temperature=0.8,
                                                    top_p=0.9, seed=7, ignore_eos=True))
    assert data["token_ids"] == local.token_ids and data["text"] == local.text
    np.testing.assert_allclose(data["values"], local.values, rtol=1e-5, atol=1e-6)


def test_generate_stream_sends_one_event_per_token(url):
    body = {"prompt": "def add(a, b):", "max_new_tokens": 6, "ignore_eos": True, "seed": 3}
    plain = post(url, "/v1/generate", body).json()
    with httpx.stream("POST", url + "/v1/generate", json={**body, "stream": True}, timeout=60) as r:
        assert r.headers["x-valueagent-stream"] == "live"  # sent as the worker decodes
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    decoded = [json.loads(e) for e in events[:-1]]
    tokens = [e for e in decoded if e["type"] == "token"]
    assert [t["token_id"] for t in tokens] == plain["token_ids"]
    assert [t["value"] for t in tokens] == pytest.approx(plain["values"], abs=1e-6)
    assert "".join(t["token"] for t in tokens) == plain["text"]
    assert decoded[-1]["type"] == "done" and decoded[-1]["text"] == plain["text"]
    assert decoded[-1]["entropies"] == pytest.approx(plain["entropies"], abs=1e-6)


def test_openai_client_works_unchanged(url):
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    out = client.chat.completions.create(model="tiny", messages=MSGS, max_tokens=8, temperature=0, seed=1,
                                         logprobs=True)
    trace = out.model_extra["valueagent"]
    assert out.usage.completion_tokens == len(trace["values"]) == len(trace["token_ids"]) > 0
    assert len(out.choices[0].logprobs.content) == out.usage.completion_tokens
    assert out.choices[0].message.content == "".join(trace["tokens"])[: len(out.choices[0].message.content)]
    stream = client.chat.completions.create(model="tiny-alias", messages=MSGS, max_tokens=8, temperature=0,
                                            seed=1, stream=True, extra_body={"steer": 0.0})
    chunks = [c for c in stream if c.choices]
    values = [c.model_extra["valueagent"]["value"] for c in chunks if "value" in (c.model_extra or {}).get(
        "valueagent", {})]
    assert values == trace["values"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == out.choices[0].message.content


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ('{"prompt": "x", ', 400, "not valid JSON"),
        ({"prompt": "x", "max_new_tokens": "5"}, 422, "max_new_tokens"),
        ({"prompt": "x", "max_tokens": 5}, 422, "unknown field `max_tokens`"),
        ({"prompt": "x", "max_new_tokens": -1}, 422, "max_new_tokens"),
        ({"prompt": "x", "max_new_tokens": 10**9}, 422, "over this server's limit"),
        ({"prompt": "x", "messages": MSGS}, 422, "exactly one"),
        ({"prompt": "x", "model": "gpt-4"}, 404, "not served here"),
        ({"messages": [{"role": "robot", "content": "x"}]}, 422, "messages[0].role"),
        ({"prompt": "x" * 70_000}, 413, "over 65536 bytes"),
        ([1, 2], 422, "body"),
    ],
)
def test_bad_input_gets_a_4xx_that_says_what_to_fix(url, body, status, says):
    content = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(url + "/v1/generate", content=content, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]["message"]
    ok = post(url, "/v1/generate", {"prompt": "x", "max_new_tokens": 2})
    assert ok.status_code == 200  # still serving


def test_chat_bad_input(url):
    assert post(url, "/v1/chat/completions", {"model": "nope", "messages": MSGS}).status_code == 404
    r = post(url, "/v1/chat/completions", {"model": "tiny", "messages": MSGS, "max_tokens": 0})
    assert r.status_code == 422 and "max_tokens" in r.json()["error"]["message"]
    r = post(url, "/v1/chat/completions", {"model": "tiny", "messages": MSGS, "frequency_penalty": 1.0})
    assert r.status_code == 422 and "penalties" in r.json()["error"]["message"]
    assert httpx.get(url + "/v1/nothing").status_code == 404


def test_score_route(url, backend):
    r = post(url, "/v1/score", {"messages": MSGS, "completion": "def f(x):\n    return sum(x)\n"})
    assert r.status_code == 200, r.text
    local = backend.score_sync(tuple(MSGS), "def f(x):\n    return sum(x)\n")
    assert r.json()["token_ids"] == local.token_ids
    np.testing.assert_allclose(r.json()["values"], local.values, rtol=1e-5, atol=1e-6)


def test_concurrent_requests_share_batches_and_match_sequential(url, backend):
    bodies = [{"messages": MSGS, "max_new_tokens": 12, "temperature": 0.7, "seed": s, "ignore_eos": True}
              for s in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda b: post(url, "/v1/generate", b), bodies))
    assert all(r.status_code == 200 for r in results)
    for body, r in zip(bodies, results, strict=True):
        local = backend.generate_sync(GenerationRequest(messages=tuple(MSGS), max_new_tokens=12, temperature=0.7,
                                                        seed=body["seed"], ignore_eos=True))
        assert r.json()["token_ids"] == local.token_ids
    metrics = httpx.get(url + "/metrics").text
    assert 'valueagent_batch_size_bucket{le="1"}' in metrics
    sample = {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in metrics.splitlines() if ln[0] != "#"}
    count, ones = sample["valueagent_batch_size_count"], sample['valueagent_batch_size_bucket{le="1"}']
    assert count > ones  # some requests arrived while others were in flight


def test_full_queue_answers_429(tiny_tokenizer):
    backend = tiny_backend(tiny_tokenizer)
    try:
        with running(create_app(backend, ServeConfig(max_queue=1, max_new_tokens=100_000))) as base:
            long = {"prompt": "x", "max_new_tokens": 1500, "ignore_eos": True}
            worker = threading.Thread(target=post, args=(base, "/v1/generate", long))
            worker.start()
            deadline = time.monotonic() + 30
            while httpx.get(base + "/health").json()["in_flight"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            r = post(base, "/v1/generate", {"prompt": "y", "max_new_tokens": 2})
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert "full" in r.json()["error"]["message"]
            worker.join()
            assert post(base, "/v1/generate", {"prompt": "y", "max_new_tokens": 2}).status_code == 200
    finally:
        backend.close()


def test_token_guards_every_route_but_health(tiny_tokenizer):
    with pytest.raises(ValueError, match="--token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "secret")
    check_bind("::1", None)
    backend = tiny_backend(tiny_tokenizer)
    try:
        with running(create_app(backend, ServeConfig(token="secret"))) as base:
            assert httpx.get(base + "/health").status_code == 200
            r = httpx.get(base + "/v1/models")
            assert r.status_code == 401 and "bearer token" in r.json()["error"]["message"]
            assert httpx.get(base + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
            ok = httpx.get(base + "/v1/models", headers={"Authorization": "Bearer secret"})
            assert ok.status_code == 200
    finally:
        backend.close()


def test_every_request_field_is_accepted(url):
    names = {f.name for f in dataclasses.fields(GenerationRequest)}
    assert names <= set(GenerateBody.model_fields)
    body = to_json(GenerationRequest(prompt="def", max_new_tokens=2))  # every field, as the HTTP backend sends it
    r = post(url, "/v1/generate", body)
    assert r.status_code == 200, r.text


def test_cli_refuses_a_public_bind_without_a_token(monkeypatch):
    from typer.testing import CliRunner

    from valueagent.cli.main import app

    monkeypatch.delenv("VALUEAGENT_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--token" in result.output


def test_generate_stream_is_live_the_first_token_arrives_while_decoding_goes_on(url):
    body = {"prompt": "def add(a, b):", "max_new_tokens": 400, "ignore_eos": True, "seed": 3, "stream": True}
    with httpx.stream("POST", url + "/v1/generate", json=body, timeout=120) as r:
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first[6:])["type"] == "token"
        # the first event came while the request is still being decoded: the server still counts it
        assert httpx.get(url + "/health", timeout=10).json()["in_flight"] >= 1
        rest = [line for line in lines if line.startswith("data: ")]
    assert rest[-1] == "data: [DONE]" and json.loads(rest[-2][6:])["n_tokens"] == 400
