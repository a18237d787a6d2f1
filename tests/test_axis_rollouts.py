"""Probe rollouts: batched through the backend API, scored by the sandbox, cached and resumed."""

from __future__ import annotations

import pytest

from valueagent.axis.rollouts import Rollout, collect_rollouts, rollout_job, split_tasks
from valueagent.runtime.generation import Generation
from valueagent.tasks import Task


def _tasks(n: int, prefix: str = "VA") -> list[Task]:
    return [Task(f"{prefix}/{i}", f"def f{i}(x):\n    \"\"\"Return x.\"\"\"\n", f"f{i}", "def check(c): pass\n")
            for i in range(n)]


class FakeBackend:
    def __init__(self) -> None:
        self.requests = []

    async def generate(self, req):
        self.requests.append(req)
        text = "def f(x):\n    return x\n```" if req.seed % 2 else "oops\n```"
        return Generation(text=text, token_ids=[1, 2, 3], logprobs=[0.0] * 3, values=[], layer=None,
                          prompt_tokens=5, finish_reason="stop")


class FakeSandbox:
    def score_humaneval(self, prompt, completion, test, entry_point):
        return type("R", (), {"status": "passed" if "return x" in completion else "failed"})()


def test_collect_caches_and_resumes(tmp_path):
    backend, cache = FakeBackend(), tmp_path / "r.jsonl"
    first = collect_rollouts(backend, FakeSandbox(), _tasks(3), cache=cache, samples=2, progress=False)
    assert len(first) == 6 and len(backend.requests) == 6
    assert {r.passed for r in first} == {True, False}
    assert all(r.assistant_prefix == "```python\n" and r.stop == ("```",) for r in backend.requests)
    again = collect_rollouts(backend, FakeSandbox(), _tasks(3), cache=cache, samples=2, progress=False)
    assert again == first and len(backend.requests) == 6  # nothing regenerated
    more = collect_rollouts(backend, FakeSandbox(), _tasks(4), cache=cache, samples=2, progress=False)
    assert len(more) == 8 and len(backend.requests) == 8


def test_humaneval_tasks_are_refused(tmp_path):
    with pytest.raises(ValueError, match="HumanEval is the eval set"):
        collect_rollouts(FakeBackend(), FakeSandbox(), _tasks(1, "HumanEval"), cache=tmp_path / "r.jsonl")


def test_split_is_disjoint_and_seeded(tiny_tokenizer):
    tasks = _tasks(20)
    train, held = split_tasks(tasks, n_heldout=5, seed=0)
    assert len(held) == 5 and not {t.task_id for t in train} & {t.task_id for t in held}
    assert held == split_tasks(tasks, n_heldout=5, seed=0)[1] != split_tasks(tasks, n_heldout=5, seed=1)[1]
    r = Rollout("VA/0", 0, 1, 0.8, "def f0(x):\n    return x\n```", 3, True, "passed")
    job = rollout_job(tiny_tokenizer, tasks[0], r)
    span = job.spans[0]
    assert job.text[span.start:span.end] == r.text and job.text[: span.start].endswith("```python\n")
