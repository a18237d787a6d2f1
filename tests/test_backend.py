"""The backend on a tiny random Qwen3: layer convention, exact value reading, steering, batching."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from valueagent.runtime.artifact import AxisMismatchError, ValueAxis
from valueagent.runtime.backend import HFBackend
from valueagent.runtime.generation import GenerationRequest
from valueagent.runtime.hooks import AxisHook, attached, steering
from valueagent.runtime.layers import block_for_layer, decoder_layers, hidden_of

MSGS = ({"role": "user", "content": "Write a function that returns the sum of a list."},)


def make_axis(model, layer: int = 2, seed: int = 1, model_id: str = "tiny") -> ValueAxis:
    rng = np.random.default_rng(seed)
    h = model.config.hidden_size
    return ValueAxis(
        direction=rng.standard_normal(h).astype(np.float32),
        layer=layer,
        model_id=model_id,
        hidden_size=h,
        num_layers=model.config.num_hidden_layers,
        estimator="test-random",
    )


def make_backend(model, tok, axis=None, **kw) -> HFBackend:
    return HFBackend(model, tok, model_id="tiny", axis=axis if axis is not None else make_axis(model), **kw)


def test_layer_convention_hook_equals_hidden_states(tiny_tokenizer):
    from tests.conftest import build_tiny_qwen3

    model = build_tiny_qwen3(num_layers=3)
    ids = torch.tensor([tiny_tokenizer("def add(a, b): return a + b")["input_ids"]])
    seen: dict[int, torch.Tensor] = {}
    handles = [
        block_for_layer(model, L).register_forward_hook(lambda m, a, o, L=L: seen.__setitem__(L, hidden_of(o)))
        for L in (1, 2, 3)
    ]
    try:
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
    finally:
        for h in handles:
            h.remove()
    assert len(hs) == 3 + 1  # embeddings + one per block
    for L in (1, 2):
        torch.testing.assert_close(seen[L], hs[L])
    # The last entry of hidden_states has the final norm applied; the block output does not.
    torch.testing.assert_close(model.model.norm(seen[3]), hs[3])
    with pytest.raises(ValueError, match="out of range"):
        block_for_layer(model, 0)
    with pytest.raises(ValueError, match="out of range"):
        block_for_layer(model, 4)


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) for m in decoder_layers(model))


def test_value_trace_equals_cosine_from_hidden_states(tiny_model, tiny_tokenizer):
    backend = make_backend(tiny_model, tiny_tokenizer)
    req = GenerationRequest(messages=MSGS, max_new_tokens=12, ignore_eos=True)
    gen = backend.generate_sync(req)
    assert gen.n_tokens == 12 and len(gen.values) == 12 and len(gen.logprobs) == 12
    prompt_ids = backend._encode(backend.prompt_text(req))
    ids = torch.tensor([prompt_ids + gen.token_ids])
    with torch.no_grad():
        out = tiny_model(input_ids=ids, output_hidden_states=True)
    h = out.hidden_states[2][0, len(prompt_ids) :]  # layer 2 = hidden_states[2]
    d = torch.from_numpy(backend.axis.direction)
    expected = torch.nn.functional.cosine_similarity(h, d[None, :], dim=-1)
    np.testing.assert_allclose(gen.values, expected.numpy(), atol=1e-4)
    # log-probabilities are those of the model at the producing position
    lp = torch.log_softmax(out.logits[0, len(prompt_ids) - 1 : -1], dim=-1)
    expected_lp = lp.gather(1, torch.tensor(gen.token_ids)[:, None])[:, 0]
    np.testing.assert_allclose(gen.logprobs, expected_lp.numpy(), atol=1e-4)
    backend.close()


def test_hooks_leave_no_trace(tiny_model, tiny_tokenizer):
    ids = torch.tensor([tiny_tokenizer("for i in range(10):")["input_ids"]])
    with torch.no_grad():
        # transformers installs its own (inert) output-recording hooks on first use of
        # output_hidden_states; count ours relative to that state.
        tiny_model(input_ids=ids, output_hidden_states=True)
        before = tiny_model(input_ids=ids).logits.clone()
    baseline = _hook_count(tiny_model)
    backend = make_backend(tiny_model, tiny_tokenizer)
    backend.generate_sync(GenerationRequest(messages=MSGS, max_new_tokens=5, steer=0.5))
    backend.close()
    d = torch.randn(tiny_model.config.hidden_size)
    with pytest.raises(RuntimeError):
        with steering(tiny_model, 1, d, 10.0):
            raise RuntimeError("boom")
    assert _hook_count(tiny_model) == baseline
    with torch.no_grad():
        after = tiny_model(input_ids=ids).logits
    torch.testing.assert_close(before, after, rtol=0, atol=0)


def test_steer_zero_changes_nothing_and_steering_changes_text(tiny_model, tiny_tokenizer):
    backend = make_backend(tiny_model, tiny_tokenizer, prefix_cache_mb=0)  # bitwise: no reuse of prefixes
    base = backend.generate_sync(GenerationRequest(messages=MSGS, max_new_tokens=16, ignore_eos=True))
    zero = backend.generate_sync(GenerationRequest(messages=MSGS, max_new_tokens=16, ignore_eos=True, steer=0.0))
    strong = backend.generate_sync(
        GenerationRequest(messages=MSGS, max_new_tokens=16, ignore_eos=True, steer=-4.0, steer_generated_only=False)
    )
    assert zero.token_ids == base.token_ids and zero.values == base.values
    assert strong.token_ids != base.token_ids
    backend.close()


def test_planted_direction_shifts_the_reading(tiny_model, tiny_tokenizer):
    """Steering along d at layer 1 must raise the reading of d at layer 2 (the residual carries it)."""
    axis = make_axis(tiny_model, layer=2)
    backend = make_backend(tiny_model, tiny_tokenizer, axis=axis)
    req = GenerationRequest(messages=MSGS, max_new_tokens=8, ignore_eos=True)
    plain = backend.generate_sync(req)
    d = torch.from_numpy(axis.direction)
    with steering(tiny_model, 1, d, 3.0):
        up = backend.generate_sync(req)
    with steering(tiny_model, 1, d, -3.0):
        down = backend.generate_sync(req)
    assert np.mean(up.values) > np.mean(plain.values) > np.mean(down.values)
    backend.close()


def test_batched_equals_unbatched_fp32(tiny_model, tiny_tokenizer):
    prompts = [
        GenerationRequest(messages=({"role": "user", "content": "add two numbers"},), max_new_tokens=10),
        GenerationRequest(prompt="def add(a, b):\n", max_new_tokens=7, ignore_eos=True),
        GenerationRequest(messages=MSGS, max_new_tokens=9, temperature=0.9, top_p=0.9, seed=7),
        GenerationRequest(messages=MSGS, max_new_tokens=9, steer=0.3),
    ]
    solo_backend = make_backend(tiny_model, tiny_tokenizer, max_batch=1)
    solo = [solo_backend.generate_sync(r) for r in prompts]
    solo_backend.close()

    batch_backend = make_backend(tiny_model, tiny_tokenizer, max_batch=8, batch_window_s=0.2)

    async def all_at_once():
        return await asyncio.gather(*(batch_backend.generate(r) for r in prompts))

    batched = asyncio.run(all_at_once())
    batch_backend.close()
    for a, b in zip(solo, batched, strict=True):
        assert a.token_ids == b.token_ids
        np.testing.assert_allclose(a.values, b.values, atol=1e-4)
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)


def test_stop_strings_and_seeds(tiny_model, tiny_tokenizer):
    backend = make_backend(tiny_model, tiny_tokenizer)
    free = backend.generate_sync(GenerationRequest(prompt="def", max_new_tokens=30, ignore_eos=True))
    assert free.finish_reason == "length" and free.n_tokens == 30
    # stop on the text of a token that greedy decoding produces anyway
    stop = free.tokens[5]
    if stop.strip():
        cut = backend.generate_sync(GenerationRequest(prompt="def", max_new_tokens=30, stop=(stop,)))
        assert cut.finish_reason == "stop" and stop in cut.text and cut.n_tokens <= 6
    s1 = backend.generate_sync(GenerationRequest(prompt="def", max_new_tokens=12, temperature=1.0, seed=3))
    s2 = backend.generate_sync(GenerationRequest(prompt="def", max_new_tokens=12, temperature=1.0, seed=3))
    s3 = backend.generate_sync(GenerationRequest(prompt="def", max_new_tokens=12, temperature=1.0, seed=4))
    assert s1.token_ids == s2.token_ids
    assert s1.token_ids != s3.token_ids
    backend.close()


def test_score_is_teacher_forced_reading(tiny_model, tiny_tokenizer):
    backend = make_backend(tiny_model, tiny_tokenizer)
    completion = "def add(a, b):\n    return a + b\n"
    scored = backend.score_sync(MSGS, completion)
    assert len(scored.values) == len(scored.logprobs) == len(scored.token_ids) > 3
    assert all(-1.0 <= v <= 1.0 for v in scored.values)
    assert all(lp <= 0 for lp in scored.logprobs)

    async def two():
        return await asyncio.gather(backend.score(MSGS, completion), backend.score(MSGS, "x = 1\n"))

    batched, _ = asyncio.run(two())
    np.testing.assert_allclose(batched.values, scored.values, atol=1e-4)
    backend.close()


def test_no_axis_means_no_values_and_no_steering(tiny_model, tiny_tokenizer):
    backend = HFBackend(tiny_model, tiny_tokenizer, model_id="tiny")
    gen = backend.generate_sync(GenerationRequest(messages=MSGS, max_new_tokens=4, ignore_eos=True))
    assert gen.values == [] and gen.n_tokens == 4 and gen.layer is None
    with pytest.raises(ValueError, match="axis"):
        backend.generate_sync(GenerationRequest(messages=MSGS, max_new_tokens=4, steer=0.2))
    backend.close()


def test_mismatched_axis_is_refused(tiny_model, tiny_tokenizer):
    wrong_shape = ValueAxis(
        direction=np.ones(32, dtype=np.float32), layer=1, model_id="tiny", hidden_size=32, num_layers=2,
        estimator="x",
    )
    with pytest.raises(AxisMismatchError, match="axis build"):
        HFBackend(tiny_model, tiny_tokenizer, model_id="tiny", axis=wrong_shape)
    other_model = make_axis(tiny_model, model_id="someone/else")
    with pytest.raises(AxisMismatchError, match="does not transfer"):
        HFBackend(tiny_model, tiny_tokenizer, model_id="tiny", axis=other_model)


def test_axis_hook_reads_before_steering(tiny_model, tiny_tokenizer):
    d = torch.randn(tiny_model.config.hidden_size)
    ids = torch.tensor([tiny_tokenizer("hello world")["input_ids"]])
    reads = []
    for alpha in (0.0, 50.0):
        hook = AxisHook(d)
        hook.set_steering(torch.tensor([alpha]), torch.tensor([True]))
        with attached(tiny_model, 2, hook), torch.no_grad():
            tiny_model(input_ids=ids)
            reads.append(hook.last.clone())
    torch.testing.assert_close(reads[0], reads[1])


def test_request_joins_a_running_batch_and_leaves_early(tiny_model, tiny_tokenizer):
    """Continuous batching: a late short request is served mid-flight, returns first, and matches solo.

    Ordered by events, not by a stagger: the short request is queued from inside the long one's third
    token (the decoding thread waits until it is), and the token events show where each one ran."""
    long_req = GenerationRequest(prompt="def add(a, b):\n", max_new_tokens=60, ignore_eos=True)
    short_req = GenerationRequest(messages=MSGS, max_new_tokens=4, ignore_eos=True, steer=0.5)
    solo_backend = make_backend(tiny_model, tiny_tokenizer)
    solo_long, solo_short = solo_backend.generate_sync(long_req), solo_backend.generate_sync(short_req)
    solo_backend.close()

    backend = make_backend(tiny_model, tiny_tokenizer, batch_window_s=0.0)
    events: list[tuple[str, int]] = []  # appended by the decoding thread only
    done: list[str] = []
    queued = threading.Event()

    async def both():
        loop = asyncio.get_running_loop()
        late: list[asyncio.Future] = []
        started = asyncio.Event()

        async def queue_short():
            late.append(asyncio.ensure_future(backend.generate(short_req, on_token=lambda e: events.append(
                ("short", e.index)))))
            late[0].add_done_callback(lambda _: done.append("short"))
            await asyncio.sleep(0)  # the new task's first step, which queues the request, runs before this resumes
            queued.set()
            started.set()

        def on_long(event):
            events.append(("long", event.index))
            if event.index == 2:
                asyncio.run_coroutine_threadsafe(queue_short(), loop)
                queued.wait(120)  # hang guard only: the loop is free, so this returns as soon as it is queued

        long_task = asyncio.ensure_future(backend.generate(long_req, on_token=on_long))
        long_task.add_done_callback(lambda _: done.append("long"))
        await started.wait()
        return await long_task, await late[0]

    got_long, got_short = asyncio.run(both())
    backend.close()
    assert queued.is_set() and done == ["short", "long"]
    shorts = [i for i, (name, _) in enumerate(events) if name == "short"]
    assert [events[i][1] for i in shorts] == list(range(4))
    assert shorts[0] > events.index(("long", 2))  # it arrived mid-flight
    longs_while_short_ran = [e for e in events[shorts[0]:shorts[-1]] if e[0] == "long"]
    assert longs_while_short_ran, "the long request waited instead of sharing the batch"
    assert events[-1] == ("long", 59) and shorts[-1] < len(events) - 1  # the short one left first
    assert got_long.token_ids == solo_long.token_ids and got_short.token_ids == solo_short.token_ids
    np.testing.assert_allclose(got_long.values, solo_long.values, atol=1e-4)
    np.testing.assert_allclose(got_short.values, solo_short.values, atol=1e-4)


def test_few_row_linear_gives_the_same_products_and_generations(tiny_tokenizer):
    from tests.conftest import build_tiny_qwen3
    from valueagent.runtime.cpu_kernels import use_few_row_linear

    plain, patched = build_tiny_qwen3(), build_tiny_qwen3()
    assert use_few_row_linear(patched) == sum(type(m) is torch.nn.Linear for m in patched.modules()) > 0
    with torch.inference_mode():
        for rows in (1, 2, 4, 16, 17, 40):  # decode-sized and prefill-sized inputs
            ids = torch.randint(0, patched.config.vocab_size, (1, rows))
            torch.testing.assert_close(patched(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-5, rtol=1e-4)
    x = torch.randn(3, 5, requires_grad=True)  # training keeps the default path and its gradients
    lin = torch.nn.Linear(5, 7)
    use_few_row_linear(torch.nn.Sequential(lin))
    lin(x).sum().backward()
    assert x.grad is not None

    texts = ("def add(a, b):\n", "Write a function", "import os\n")
    reqs = [GenerationRequest(prompt=t, max_new_tokens=8, ignore_eos=True) for t in texts]
    results = []
    for model in (plain, patched):
        backend = make_backend(model, tiny_tokenizer, max_batch=4, batch_window_s=0.2)

        async def together(b=backend):
            return await asyncio.gather(*(b.generate(r) for r in reqs))

        results.append(asyncio.run(together()))
        backend.close()
    for a, b in zip(*results, strict=True):
        assert a.token_ids == b.token_ids
        np.testing.assert_allclose(a.values, b.values, atol=1e-4)


def test_prefix_reuse_continues_a_segment_like_a_full_prefill(tiny_model, tiny_tokenizer):
    first = GenerationRequest(messages=MSGS, max_new_tokens=12, ignore_eos=True)
    outs = {}
    for mb in (0, 64):
        backend = make_backend(tiny_model, tiny_tokenizer, prefix_cache_mb=mb)
        a = backend.generate_sync(first)
        # the agent's next segment: the same chat, the text so far as the assistant prefix
        b = backend.generate_sync(GenerationRequest(messages=MSGS, assistant_prefix=a.text, max_new_tokens=10,
                                                    ignore_eos=True))
        steered = backend.generate_sync(GenerationRequest(messages=MSGS, assistant_prefix=a.text, max_new_tokens=4,
                                                          ignore_eos=True, steer=0.5))
        outs[mb] = (a, b, steered)
        backend.close()
    (a0, b0, s0), (a1, b1, s1) = outs[0], outs[64]
    assert a0.token_ids == a1.token_ids and a1.cached_prompt_tokens == 0
    assert b0.cached_prompt_tokens == 0 and b1.cached_prompt_tokens >= a1.prompt_tokens
    assert b0.token_ids == b1.token_ids
    np.testing.assert_allclose(b0.values, b1.values, atol=1e-5)
    np.testing.assert_allclose(b0.logprobs, b1.logprobs, atol=1e-5)
    assert s1.cached_prompt_tokens == 0  # steering changes keys and values: never reused
    assert s0.token_ids == s1.token_ids


def test_prefix_store_longest_common_prefix_and_eviction():
    from valueagent.runtime.decoding import PrefixStore

    def kv(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.arange(n, dtype=torch.float32).view(1, 1, n, 1),) * 2]

    store = PrefixStore(max_bytes=2 * 4 * 40, min_tokens=4)  # room for 40 float32 positions (keys + values)
    store.put(list(range(30)), kv(30))
    n, got = store.lookup([*range(20), 99, 100])
    assert n == 20 and got is not None and got[0][0].shape[2] == 20 and float(got[0][0][0, 0, -1, 0]) == 19
    n, _ = store.lookup(list(range(30)))  # identical prompt: the last token still has to run
    assert n == 29
    assert store.lookup([0, 1, 2, 50, 51]) == (0, None)  # shorter than min_tokens
    store.put(list(range(100, 120)), kv(20))  # 50 positions > 40: the least recently used goes
    assert store.lookup(list(range(25))) == (0, None)
    assert store.lookup([*range(100, 110), 7])[0] == 10
    assert store.hits == 3 and store.lookups == 5


def test_nucleus_from_the_head_equals_the_full_sort():
    from valueagent.runtime.decoding import _nucleus

    gen = torch.Generator().manual_seed(0)
    for scale, top_p in ((8.0, 0.95), (8.0, 0.5), (0.01, 0.95)):  # peaked, and flat (falls back to a full sort)
        probs = torch.softmax(torch.randn(5000, generator=gen) * scale, dim=-1)
        sp, si = probs.sort(descending=True)
        keep = sp.cumsum(0) - sp < top_p
        full = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
        torch.testing.assert_close(_nucleus(probs, top_p, head=64), full / full.sum(), rtol=0, atol=0)


_POOL_SCRIPT = """
import os, sys, torch
from valueagent.runtime.cpu_kernels import release_openmp_pool
torch.set_num_threads(2)
x = torch.randn(2_000_000)
x.add(1.0)  # a parallel region: this thread's OpenMP pool now holds a second thread
before = len(os.listdir("/proc/self/task"))
released = release_openmp_pool()
after = len(os.listdir("/proc/self/task"))
again = torch.equal(x.mul(2.0), x + x)  # parallel work still runs (on a new pool), exactly
print(released, before, after, again)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the OpenMP runtime is found in /proc/self/maps")
def test_release_openmp_pool_frees_the_calling_threads_pool_threads():
    # A fresh process: the test runner's own threads must not blur the count.
    out = subprocess.run([sys.executable, "-c", _POOL_SCRIPT], capture_output=True, text=True, timeout=120, check=True)
    released, before, after, again = out.stdout.split()
    assert released == "True"
    assert int(after) == int(before) - 1  # the pool's one helper thread is gone
    assert again == "True"


def test_backend_releases_the_starting_threads_pool_once(tiny_model, tiny_tokenizer, monkeypatch):
    import valueagent.runtime.backend as backend_mod

    calls = []
    real = backend_mod.release_openmp_pool
    monkeypatch.setattr(backend_mod, "release_openmp_pool", lambda: calls.append(1) or real())
    backend = make_backend(tiny_model, tiny_tokenizer)
    try:
        for _ in range(2):
            backend.generate_sync(GenerationRequest(messages=MSGS, max_new_tokens=2))
    finally:
        backend.close()
    assert calls == [1]  # when the worker started, not per request


def test_residual_norm_is_measured_by_the_worker_once_it_runs(tiny_model, tiny_tokenizer):
    """An axis without a stored norm is measured on first use. Once the worker decodes, the caller's
    thread must not run a forward beside it (the worker's hook may sit on the same layer): the worker
    measures between its steps, and the figure is the one measured without a worker."""
    import threading

    axis = make_axis(tiny_model, layer=1)
    assert axis.residual_norm_mean is None
    alone = make_backend(tiny_model, tiny_tokenizer, axis=axis).residual_norm

    backend = make_backend(tiny_model, tiny_tokenizer, axis=axis)
    backend.generate_sync(GenerationRequest(messages=MSGS, max_new_tokens=2))  # the worker now runs
    threads: list[str] = []
    handle = tiny_model.register_forward_pre_hook(lambda m, a: threads.append(threading.current_thread().name))
    try:
        norm = backend.residual_norm
    finally:
        handle.remove()
        backend.close()
    assert norm == pytest.approx(alone, rel=1e-6)
    assert threads and set(threads) == {"valueagent-backend"}


def test_backends_are_found_by_scheme_and_an_unknown_scheme_is_named() -> None:
    """Issue 24 item 6: `load_backend` dispatches on the spec's scheme through a registry a package extends."""
    from valueagent.runtime import backend as B

    assert B.scheme_of("embedded") == B.scheme_of("Qwen/Qwen3-8B") == B.scheme_of("/models/q") == "local"
    assert B.scheme_of("http://127.0.0.1:8000") == "http" and B.scheme_of("HTTPS://h:1") == "https"
    with pytest.raises(ValueError, match=r"no backend serves grpc:// \(known: http, https, local\)"):
        B.load_backend("grpc://host:1")
    made: list[tuple[str, dict[str, object]]] = []

    def loader(spec: str, **kw: object) -> object:
        made.append((spec, kw))
        return "a backend"

    B.register_backend("echo", loader)
    try:
        assert B.load_backend("echo://x", axis=None, max_batch=3) == "a backend"
        assert made[0][0] == "echo://x" and made[0][1]["max_batch"] == 3
        with pytest.raises(ValueError, match="already registered"):
            B.register_backend("echo", lambda spec, **kw: None)
    finally:
        B._SCHEMES.pop("echo")


def test_longest_prefix_is_the_one_reuse_rule_of_both_engines() -> None:
    """The longest shared prefix wins; it leaves one token of the prompt to run and is never shorter than the
    minimum (shorter ones are recomputed)."""
    from valueagent.runtime.decoding import longest_prefix

    rows = [("a", list(range(20))), ("b", list(range(30)) + [99]), ("c", [7] * 40)]
    assert longest_prefix(rows, list(range(25)), 16) == (24, "b")  # one token of the prompt left to run
    assert longest_prefix(rows, list(range(18)) + [5, 6], 16) == (18, "a")  # the first found of equal length
    assert longest_prefix(rows, list(range(10)) + [0] * 20, 16) == (0, None)  # 10 shared: under the minimum
    assert longest_prefix([], [1, 2, 3], 1) == (0, None)
