"""Real-model tests on the embedded default (Qwen2.5-Coder-0.5B-Instruct): marked slow, run by CI.

The first load converts the GGUF wheels into the cache (~1-2 min once); later loads take seconds.
"""

from __future__ import annotations

import ast
import asyncio
import re

import pytest

from valueagent.runtime.generation import GenerationRequest

pytestmark = pytest.mark.slow

PROMPT = (
    {"role": "user", "content": "Write a Python function add(a, b) that returns a + b. Reply with a code block."},
)


@pytest.fixture(scope="module")
def backend():
    from valueagent.runtime.backend import load_backend

    b = load_backend("embedded")
    yield b
    b.close()


def _code(text: str) -> str:
    m = re.search(r"```(?:python)?\n(.*?)(?:```|$)", text, re.S)
    return m.group(1) if m else text


def test_loads_from_cache_with_expected_shape(backend):
    info = backend.info()
    assert (info.num_layers, info.hidden_size) == (24, 896)
    assert info.model_id == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert backend.axis is not None, "the embedded model must ship with its value axis"


def test_generates_valid_python_with_one_value_per_token(backend):
    gen = backend.generate_sync(GenerationRequest(messages=PROMPT, max_new_tokens=96))
    tree = ast.parse(_code(gen.text))
    assert any(isinstance(n, ast.FunctionDef) and n.name == "add" for n in ast.walk(tree))
    assert gen.n_tokens > 5
    assert len(gen.values) == gen.n_tokens == len(gen.logprobs)
    assert all(-1.0 <= v <= 1.0 for v in gen.values)


def test_steering_changes_generation_and_batching_keeps_traces_apart(backend):
    reqs = [
        GenerationRequest(messages=PROMPT, max_new_tokens=48),
        GenerationRequest(messages=PROMPT, max_new_tokens=48, steer=-1.0, steer_generated_only=False),
    ]

    async def both():
        return await asyncio.gather(*(backend.generate(r) for r in reqs))

    plain, steered = asyncio.run(both())
    # A short, confident answer can survive steering token for token; its probabilities cannot.
    n = min(plain.n_tokens, steered.n_tokens)
    assert plain.token_ids != steered.token_ids or any(
        abs(a - b) > 1e-3 for a, b in zip(plain.logprobs[:n], steered.logprobs[:n], strict=True)
    )
    assert len(plain.values) == plain.n_tokens and len(steered.values) == steered.n_tokens


def test_teacher_forced_score_matches_generation_reading(backend):
    gen = backend.generate_sync(GenerationRequest(messages=PROMPT, max_new_tokens=32))
    scored = backend.score_sync(PROMPT, gen.text)
    if scored.token_ids == gen.token_ids:  # same tokenization: the readings must agree (bf16 noise)
        assert max(abs(a - b) for a, b in zip(scored.values, gen.values, strict=True)) < 0.05
    assert len(scored.values) == len(scored.token_ids)


def test_all_eight_policies_run_end_to_end(backend, tmp_path):
    """Every policy completes a real task under small budgets; hidden tests score afterwards."""
    from valueagent.agent import POLICY_NAMES, Budgets
    from valueagent.runner import RunConfig, read_results, run_tasks
    from valueagent.sandbox import Sandbox
    from valueagent.tasks import humaneval_split

    task = next(t for t in humaneval_split("all") if t.task_id == "HumanEval/2")
    config = RunConfig(
        policies=POLICY_NAMES,
        output_dir=tmp_path,
        concurrency=8,
        budgets=Budgets(backtracks=1, test_runs=1, revisions=1, tokens=384),
        answer_tokens=192,
    )
    with Sandbox(workers=4) as sandbox:
        outcome = asyncio.run(run_tasks([task], backend=backend, sandbox=sandbox, config=config))
    assert not outcome.errors, outcome.errors
    records = read_results(tmp_path)
    assert sorted(r["policy"] for r in records) == sorted(POLICY_NAMES)
    for r in records:
        assert r["tokens"] <= 384 and r["test_runs"] <= 1 and r["backtracks"] <= 1
        assert task.test not in str(r["transcript"])
        assert isinstance(r["passed"], bool)
