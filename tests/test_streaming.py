"""Feedback on long work: tokens stream as they come with their values; `generate` says when it stopped at
the token limit; `--json` carries each token's text beside its value."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.test_backend import make_backend
from valueagent.cli import model_cmd
from valueagent.cli.main import app
from valueagent.runtime.generation import GenerationRequest, TokenEvent

runner = CliRunner()


def _request(n: int, seed: int = 0, temperature: float = 0.0) -> GenerationRequest:
    return GenerationRequest(prompt="def add(a, b):", max_new_tokens=n, temperature=temperature, seed=seed,
                             ignore_eos=True)


def test_events_match_the_generation_and_streaming_changes_nothing(tiny_model: Any, tiny_tokenizer: Any) -> None:
    backend = make_backend(tiny_model, tiny_tokenizer)
    events: list[TokenEvent] = []
    threads: set[str] = set()

    def on_token(event: TokenEvent) -> None:
        events.append(event)
        threads.add(threading.current_thread().name)

    streamed = backend.generate_sync(_request(12, temperature=0.8), on_token=on_token)
    plain = backend.generate_sync(_request(12, temperature=0.8))
    backend.close()
    assert streamed.token_ids == plain.token_ids and streamed.values == plain.values  # streaming is read-only
    assert [e.index for e in events] == list(range(len(streamed.token_ids)))
    assert [e.token_id for e in events] == list(streamed.token_ids)
    assert [e.value for e in events] == streamed.values and [e.logprob for e in events] == streamed.logprobs
    assert streamed.text.startswith("".join(e.text for e in events))
    assert threading.main_thread().name not in threads  # it runs on the decoding thread, as documented


def test_a_failing_callback_stops_streaming_not_the_generation(tiny_model: Any, tiny_tokenizer: Any) -> None:
    backend = make_backend(tiny_model, tiny_tokenizer)
    calls: list[int] = []

    def broken(event: TokenEvent) -> None:
        calls.append(event.index)
        raise RuntimeError("a display that broke")

    gen = backend.generate_sync(_request(6), on_token=broken)
    backend.close()
    assert gen.n_tokens == 6 and calls == [0]


@pytest.fixture
def tiny_backend(monkeypatch: pytest.MonkeyPatch, tiny_model: Any, tiny_tokenizer: Any) -> Any:
    backend = make_backend(tiny_model, tiny_tokenizer)
    monkeypatch.setattr(model_cmd, "load_backend_or_fail", lambda *a, **k: backend)
    return backend


def test_generate_json_carries_token_texts_beside_values_and_the_limit(tiny_backend: Any) -> None:
    res = runner.invoke(app, ["generate", "def add(a, b):", "--raw", "--max-new-tokens", "5", "--json"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.stdout.splitlines() if x.startswith("{"))
    out = json.loads(line)
    assert len(out["tokens"]) == len(out["values"]) == len(out["token_ids"]) == out["n_tokens"]
    assert "".join(out["tokens"]) == out["text"]
    assert out["finish_reason"] == "length" and out["stopped_at_token_limit"]  # the tiny model never ends
    assert "stopped at the token limit (5 tokens, --max-new-tokens 5)" in res.stderr


def test_generate_streams_text_to_a_pipe_and_says_it_hit_the_limit(tiny_backend: Any) -> None:
    tiny_backend_gen = tiny_backend.generate_sync
    seen: list[str] = []

    def spy(request: GenerationRequest, *, on_token: Any = None) -> Any:
        def tap(event: TokenEvent) -> None:
            seen.append(event.text)
            on_token(event)

        return tiny_backend_gen(request, on_token=tap)

    tiny_backend.generate_sync = spy
    req = ["generate", "def add(a, b):", "--raw", "--max-new-tokens", "4"]
    res = runner.invoke(app, req)
    assert res.exit_code == 0, res.output
    assert len(seen) == 4 and res.stdout.startswith("".join(seen))  # written as the tokens came
    assert "stopped at the token limit (4 tokens, --max-new-tokens 4)" in res.stderr
    assert "value @ layer" in res.stderr
