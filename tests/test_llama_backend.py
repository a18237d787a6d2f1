"""The llama.cpp backend against the transformers one, on the embedded 0.5B model (same GGUF, same tokenizer).

Agreement, as issue 27 asks: teacher-forced values correlate >= 0.99 with the float32 transformers path; greedy
texts match or part only where the transformers path's top two tokens are nearly tied; steering moves both
the same way. Then what only this backend does: the shared prefill of N samples, prefix reuse from kept rows,
seeded sampling independent of what shares the batch, and its errors. Marked slow: CI runs them.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from valueagent.runtime.backend import resolve_engine
from valueagent.runtime.generation import GenerationRequest

PROMPTS = [
    ({"role": "user", "content": "Write a Python function add(a, b) that returns a + b. Reply with a code block."},),
    ({"role": "user", "content": "Write a Python function is_palindrome(s) that ignores case. Reply with code."},),
    ({"role": "user", "content": "Complete this function:\n\ndef fib(n):\n    \"\"\"Return the n-th Fibonacci "
                                 "number, fib(0) = 0.\"\"\"\n"},),
]
NEAR_TIE = 1.0  # nats between the transformers path's two best tokens where a divergence is a near tie


# -- choosing the engine: no model needed ------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "kw", "engine"), [
    ("embedded", {}, "llama"),
    ("embedded-1.5b", {}, "llama"),
    ("/models/x.gguf", {}, "llama"),
    ("embedded", {"quantize": "int8"}, "hf"),
    ("embedded", {"dtype": "bfloat16"}, "hf"),
    ("embedded", {"device": "cuda"}, "hf"),
    ("Qwen/Qwen3-8B", {}, "hf"),
])
def test_auto_picks_llama_where_it_can_serve_the_model_as_asked(model: str, kw: dict[str, str], engine: str) -> None:
    assert resolve_engine(model, "auto", **kw) == engine


@pytest.mark.parametrize(("model", "backend", "kw", "needle"), [
    ("Qwen/Qwen3-8B", "llama", {}, "not one: give an embedded name or a .gguf path"),
    ("embedded", "llama", {"quantize": "int8"}, "drop --quantize, or pass --backend hf"),
    ("embedded", "llama", {"device": "cuda"}, "pass --backend hf"),
    ("x.gguf", "hf", {}, "pass --backend llama"),
    ("embedded", "vllm", {}, "choose auto, llama, hf"),
])
def test_impossible_engine_choices_are_one_line_errors(model: str, backend: str, kw: dict[str, str],
                                                      needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        resolve_engine(model, backend, **kw)


def test_a_missing_llama_cpp_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from valueagent.runtime.llama import LlamaBackendError, llama_cpp

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(LlamaBackendError, match=r"pip install llama-cpp-python==0\.3\.36.*--backend hf"):
        llama_cpp()


# -- the tiny Qwen3 model as an F32 GGUF: the same numbers, fast -------------------------------------------------
TINY = ({"role": "user", "content": "Write a function that returns the sum of a list."},)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory, tiny_tokenizer):
    from tests.conftest import build_tiny_qwen3
    from tests.gguf_tiny import write_tiny_gguf
    from tests.test_backend import make_axis, make_backend
    from valueagent.runtime.llama import LlamaBackend

    model = build_tiny_qwen3(num_layers=3)
    axis = make_axis(model, layer=2)
    path = write_tiny_gguf(model, tiny_tokenizer, tmp_path_factory.mktemp("tiny-gguf"))
    llama = LlamaBackend(path, tiny_tokenizer, model_id="tiny", axis=axis, max_batch=8, n_ctx=4096)
    hf = make_backend(model, tiny_tokenizer, axis=axis, prefix_cache_mb=0)
    yield llama, hf
    llama.close()
    hf.close()


def test_tiny_teacher_forced_values_and_logprobs_equal_transformers(tiny_pair) -> None:
    llama, hf = tiny_pair
    code = "def total(xs):\n    return sum(xs)\n"
    x, y = llama.score_sync(TINY, code), hf.score_sync(TINY, code)
    assert x.token_ids == y.token_ids and x.layer == y.layer == 2
    np.testing.assert_allclose(x.values, y.values, atol=1e-3)
    np.testing.assert_allclose(x.logprobs, y.logprobs, atol=1e-3)
    assert llama.residual_norm == pytest.approx(hf.residual_norm, rel=1e-3)


@pytest.mark.parametrize("steer", [0.0, 0.8, -0.8])
def test_tiny_greedy_and_steered_generations_equal_transformers(tiny_pair, steer: float) -> None:
    llama, hf = tiny_pair
    req = GenerationRequest(messages=TINY, max_new_tokens=24, ignore_eos=True, steer=steer,
                            steer_generated_only=steer > 0)
    a, b = llama.generate_sync(req), hf.generate_sync(req)
    assert a.token_ids == b.token_ids
    np.testing.assert_allclose(a.values, b.values, atol=1e-3)  # read before steering, on both
    np.testing.assert_allclose(a.top_logprobs, b.top_logprobs, atol=1e-3)
    assert a.finish_reason == b.finish_reason == "length"


def test_tiny_steering_changes_the_generation(tiny_pair) -> None:
    llama, _ = tiny_pair
    gens = [llama.generate_sync(GenerationRequest(messages=TINY, max_new_tokens=24, ignore_eos=True, steer=s,
                                                  steer_generated_only=False)) for s in (0.0, 3.0, -3.0)]
    # a random tiny model's text may not move, its distribution does
    assert len({tuple(np.round(g.logprobs, 3)) for g in gens}) == 3


def test_tiny_a_seed_draws_the_same_tokens_on_both_engines(tiny_pair) -> None:
    llama, hf = tiny_pair
    for seed in range(3):
        req = GenerationRequest(messages=TINY, max_new_tokens=16, ignore_eos=True, temperature=1.0, top_p=0.9,
                                seed=seed, hidden_mean=True)
        a, b = llama.generate_sync(req), hf.generate_sync(req)
        assert a.token_ids == b.token_ids
        np.testing.assert_allclose(a.hidden_mean, b.hidden_mean, atol=1e-3)


def test_tiny_a_linear_read_head_reads_its_logit_on_both_engines(tiny_pair, tiny_tokenizer) -> None:
    """An axis read ``linear`` (a value head exported by `bank heads`) gives ``h . d + bias`` per token on both
    engines, decoding and teacher-forced: its mean over the generated tokens is the reading of their mean
    residual, what the head was fitted on."""
    from dataclasses import replace

    from tests.conftest import build_tiny_qwen3
    from tests.test_backend import make_backend
    from valueagent.runtime.llama import LlamaBackend

    llama, _ = tiny_pair
    assert llama.axis is not None
    head = replace(llama.axis, reading="linear", bias=0.25, estimator="supervised-probe")
    a = LlamaBackend(llama.gguf, tiny_tokenizer, model_id="tiny", axis=head, max_batch=2, kept=0, n_ctx=1024)
    b = make_backend(build_tiny_qwen3(num_layers=3), tiny_tokenizer, axis=head, prefix_cache_mb=0)
    try:
        req = GenerationRequest(messages=TINY, max_new_tokens=16, ignore_eos=True, hidden_mean=True)
        x, y = a.generate_sync(req), b.generate_sync(req)
        assert x.token_ids == y.token_ids
        scale = float(np.abs(y.values).max())
        np.testing.assert_allclose(x.values, y.values, atol=1e-3 * scale)
        for g in (x, y):
            assert float(np.mean(g.values)) == pytest.approx(float(np.dot(g.hidden_mean, head.direction)) + 0.25,
                                                             abs=1e-3 * scale)
        cosines = llama.generate_sync(req).values
        assert not np.allclose(cosines, x.values, atol=0.1)  # the same direction, another reading
        code = "def total(xs):\n    return sum(xs)\n"
        np.testing.assert_allclose(a.score_sync(TINY, code).values, b.score_sync(TINY, code).values,
                                   atol=1e-3 * scale)
        assert a.info().axis_sha256 == head.sha256 != llama.axis.sha256
    finally:
        a.close()
        b.close()


def test_tiny_batched_rows_equal_rows_alone_and_cancel_cleanly(tiny_pair) -> None:
    llama, _ = tiny_pair
    reqs = [GenerationRequest(messages=TINY, max_new_tokens=12 + s, ignore_eos=True, temperature=0.9, seed=s,
                              steer=0.5 if s % 3 == 0 else 0.0) for s in range(7)]

    async def together():
        return await asyncio.gather(*(llama.generate(r) for r in reqs))

    batched = asyncio.run(together())
    alone = [llama.generate_sync(r) for r in reqs]
    assert [g.token_ids for g in batched] == [g.token_ids for g in alone]
    # F32 products of 7 rows sum in another order than of 1: values agree to float error
    np.testing.assert_allclose([v for g in batched for v in g.values], [v for g in alone for v in g.values], atol=1e-3)

    async def cancel_one():
        slow = asyncio.ensure_future(llama.generate(GenerationRequest(messages=TINY, max_new_tokens=400,
                                                                      ignore_eos=True)))
        quick = asyncio.ensure_future(llama.generate(reqs[1]))
        await asyncio.sleep(0.05)
        slow.cancel()
        return await quick

    assert asyncio.run(cancel_one()).token_ids == alone[1].token_ids
    assert llama.generate_sync(reqs[2]).token_ids == alone[2].token_ids  # the freed sequence serves again


def test_tiny_a_follow_up_prompt_reuses_the_finished_row(tiny_pair) -> None:
    llama, _ = tiny_pair
    first = llama.generate_sync(GenerationRequest(messages=TINY, max_new_tokens=20, ignore_eos=True))
    follow = GenerationRequest(messages=TINY, assistant_prefix=first.text, max_new_tokens=10, ignore_eos=True)
    hits = llama.prefix_hits
    again = llama.generate_sync(follow)
    assert llama.prefix_hits == hits + 1 and again.cached_prompt_tokens >= first.prompt_tokens - 1
    assert again.token_ids == _cold(llama, follow).token_ids


def test_tiny_a_full_cache_fails_the_request_and_frees_its_sequence(tiny_pair, tiny_tokenizer) -> None:
    from valueagent.runtime.llama import KVCacheFull, LlamaBackend

    llama, _ = tiny_pair
    small = LlamaBackend(llama.gguf, tiny_tokenizer, model_id="tiny", axis=llama.axis, max_batch=1, kept=0,
                         n_ctx=256)
    try:
        with pytest.raises(KVCacheFull, match="no room in the KV cache"):
            small.generate_sync(GenerationRequest(messages=TINY, max_new_tokens=1000, ignore_eos=True))
        again = small.generate_sync(GenerationRequest(messages=TINY, max_new_tokens=8, ignore_eos=True))
        assert again.n_tokens == 8  # the failed row's sequence was freed: the only one there is
    finally:
        small.close()


def _cold(llama, req):
    """``req`` with every kept row forgotten (every prompt token prefilled)."""
    for seq in list(llama._kept):
        llama.free_seq(seq)
    out = llama.generate_sync(req)
    assert out.cached_prompt_tokens == 0
    return out


# -- the real model ------------------------------------------------------------------------------------------------
slow = pytest.mark.slow


@pytest.fixture(scope="module")
def llama():
    from valueagent.runtime.llama import load_llama_backend

    b = load_llama_backend("embedded", max_batch=9)
    yield b
    b.close()


@pytest.fixture(scope="module")
def hf():
    from valueagent.runtime.backend import load_backend

    b = load_backend("embedded", backend="hf", dtype="float32", device="cpu", prefix_cache_mb=0)
    yield b
    b.close()


@slow
def test_info_names_the_engine_and_the_same_model(llama, hf) -> None:
    a, b = llama.info(), hf.info()
    assert (a.backend, b.backend) == ("llama.cpp", "transformers")
    assert (a.model_id, a.revision, a.num_layers, a.hidden_size, a.axis_sha256) == (
        b.model_id, b.revision, b.num_layers, b.hidden_size, b.axis_sha256)
    assert a.has_axis and a.per_token_values and a.steering


@slow
def test_teacher_forced_values_agree_with_float32_transformers(llama, hf) -> None:
    completion = "```python\ndef add(a, b):\n    return a + b\n```\nThis function returns the sum of a and b."
    x, y = llama.score_sync(PROMPTS[0], completion), hf.score_sync(PROMPTS[0], completion)
    assert x.token_ids == y.token_ids
    r = np.corrcoef(x.values, y.values)[0, 1]
    assert r >= 0.99, f"values correlate {r:.4f}"
    assert np.corrcoef(x.logprobs, y.logprobs)[0, 1] >= 0.95
    assert llama.residual_norm == pytest.approx(hf.residual_norm, rel=0.05)


@slow
@pytest.mark.parametrize("i", range(len(PROMPTS)))
def test_greedy_texts_match_or_part_at_a_near_tie(llama, hf, i: int) -> None:
    req = GenerationRequest(messages=PROMPTS[i], max_new_tokens=64)
    a, b = llama.generate_sync(req), hf.generate_sync(req)
    n = next((k for k, (s, t) in enumerate(zip(a.token_ids, b.token_ids, strict=False)) if s != t), None)
    if n is None:
        assert a.token_ids == b.token_ids
        return
    top = sorted(b.top_logprobs[n], reverse=True)
    assert top[0] - top[1] < NEAR_TIE, f"parted at token {n} where transformers' top two differ by {top[0] - top[1]}"


@slow
def test_steering_moves_both_engines_the_same_way(llama, hf) -> None:
    def run(b, steer):
        return b.generate_sync(GenerationRequest(messages=PROMPTS[0], max_new_tokens=32, steer=steer,
                                                 steer_generated_only=False))

    for b in (llama, hf):
        assert run(b, -1.0).text != run(b, 0.0).text
    x, y = run(llama, -1.0), run(hf, -1.0)
    n = next((k for k, (s, t) in enumerate(zip(x.token_ids, y.token_ids, strict=False)) if s != t), len(x.token_ids))
    assert n >= 4, "the steered generations part at once"
    assert np.corrcoef(x.values[:n], y.values[:n])[0, 1] >= 0.95  # read before the vector is added, on both


@slow
def test_a_tasks_samples_share_one_prefill_and_match_one_by_one(llama) -> None:
    reqs = [GenerationRequest(messages=PROMPTS[1], max_new_tokens=24, temperature=0.8, top_p=0.95, seed=s)
            for s in range(6)]

    async def together():
        return await asyncio.gather(*(llama.generate(r) for r in reqs))

    batched = asyncio.run(together())
    alone = [llama.generate_sync(r) for r in reqs]
    # llama.cpp's quantized kernels sum in another order for 6 rows than for 1, so a sampled row may part from
    # itself where its draw falls at a boundary (the tiny F32 model above matches exactly); until it parts, the
    # same tokens read the same values.
    same = sum(a.token_ids == b.token_ids for a, b in zip(batched, alone, strict=True))
    assert same >= 4, f"only {same} of 6 rows decoded alone match the batch"
    for a, b in zip(batched, alone, strict=True):
        n = next((k for k, (s, t) in enumerate(zip(a.token_ids, b.token_ids, strict=False)) if s != t), a.n_tokens)
        np.testing.assert_allclose(a.values[:n], b.values[:n], atol=0.02)
    assert len({tuple(g.token_ids) for g in batched}) > 1, "six seeds drew one text"


@slow
def test_a_prompt_extending_a_finished_row_prefills_only_its_new_tokens(llama) -> None:
    first = llama.generate_sync(GenerationRequest(messages=PROMPTS[2], max_new_tokens=20))
    follow = GenerationRequest(messages=PROMPTS[2], assistant_prefix=first.text, max_new_tokens=12)
    again = llama.generate_sync(follow)
    assert again.cached_prompt_tokens >= first.prompt_tokens
    assert _cold(llama, follow).token_ids == again.token_ids


@slow
def test_stop_strings_and_in_decode_abort(llama) -> None:
    stop = llama.generate_sync(GenerationRequest(messages=PROMPTS[0], max_new_tokens=64, stop=("return",)))
    assert stop.finish_reason == "stop" and "return" in stop.text
    abort = llama.generate_sync(GenerationRequest(messages=PROMPTS[0], max_new_tokens=64,
                                                  abort_below=("value", 1.0)))
    assert abort.finish_reason == "abort" and abort.n_tokens < 64


@slow
def test_an_axis_of_another_model_is_refused(tmp_path) -> None:
    from valueagent.runtime.artifact import ValueAxis, save_axis
    from valueagent.runtime.llama import load_llama_backend

    path = tmp_path / "axis.safetensors"
    save_axis(ValueAxis(direction=np.ones(1536, dtype=np.float32), layer=12, hidden_size=1536, num_layers=28,
                        model_id="Qwen/Qwen2.5-Coder-0.5B-Instruct", estimator="test"), path)
    with pytest.raises(ValueError, match="1536|28"):
        load_llama_backend("embedded", axis=str(path))
