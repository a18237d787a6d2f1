"""The model's own coding attempts on training tasks, scored by their tests: data for the value probe.

Each task gets ``samples`` attempts sampled at ``temperature`` (so both passing and failing attempts
occur), with the agent's own prompt (:mod:`valueagent.agent.prompts`: the assistant turn prefilled
with a ```` ```python ```` fence, stopping at the closing fence). Attempts are generated in
concurrent batches through :class:`~valueagent.runtime.backend.HFBackend` and scored by the sandbox (the
generated code never runs in this process). Results are appended to a JSONL cache as they finish,
so a killed run resumes where it stopped. Never pass HumanEval tasks here: HumanEval is the eval set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from valueagent.agent.prompts import PromptConfig, completion_for, extract_code, task_messages
from valueagent.axis.activations import Span, TextJob
from valueagent.axis.progress import Counter
from valueagent.runtime.generation import GenerationRequest
from valueagent.tasks import Task


@dataclass(frozen=True)
class Rollout:
    """One attempt: the generated text (after the prefilled fence) and whether the hidden tests passed."""

    task_id: str
    sample: int
    seed: int
    temperature: float
    text: str
    n_tokens: int
    passed: bool
    status: str


def split_tasks(tasks: Sequence[Task], *, n_heldout: int, seed: int = 0) -> tuple[list[Task], list[Task]]:
    """(train, held-out) by a seeded hash of the task id: held-out tasks never reach the probe, so
    their correct-vs-corrupted programs are unseen by every estimator."""
    import hashlib

    order = sorted(tasks, key=lambda t: hashlib.sha256(f"{seed}:{t.task_id}".encode()).hexdigest())
    held = {t.task_id for t in order[:n_heldout]}
    return [t for t in tasks if t.task_id not in held], [t for t in tasks if t.task_id in held]


def _messages(task: Task, config: PromptConfig) -> list[dict[str, str]]:
    pub = task.public().to_dict()
    return task_messages(pub, config)  # type: ignore[arg-type]


def rollout_job(tokenizer: Any, task: Task, rollout: Rollout, config: PromptConfig | None = None) -> TextJob:
    """The teacher-forced text of an attempt with one span: the generated tokens."""
    from valueagent.runtime.loading import render_chat

    config = config or PromptConfig()
    head = render_chat(tokenizer, _messages(task, config)) + config.prefill
    text = head + rollout.text
    return TextJob(
        key=f"rollout:{rollout.task_id}:{rollout.sample}",
        text=text,
        spans=(Span("completion", len(head), len(text)),),
    )


def _load_cache(path: Path) -> dict[tuple[str, int], Rollout]:
    done: dict[tuple[str, int], Rollout] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = Rollout(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue  # a line cut by a kill
            done[(r.task_id, r.sample)] = r
    return done


def _score(sandbox: Any, task: Task, text: str) -> tuple[bool, str]:
    code = extract_code(text, task.entry_point)
    result = sandbox.score_humaneval(task.prompt, completion_for(code, task.entry_point),
                                     task.test, task.entry_point)
    return result.status == "passed", str(result.status)


async def _run(
    backend: Any, sandbox: Any, tasks: Sequence[Task], todo: list[tuple[int, int]], *, cache: Path,
    temperature: float, top_p: float, max_new_tokens: int, concurrency: int, seed: int,
    config: PromptConfig, progress: bool,
) -> None:
    sem = asyncio.Semaphore(concurrency)
    lock = asyncio.Lock()
    count, passed = 0, 0
    counter = Counter("rollouts", len(todo)) if progress else None

    async def one(ti: int, sample: int) -> None:
        nonlocal count, passed
        task = tasks[ti]
        s = seed * 1_000_003 + ti * 1009 + sample
        req = GenerationRequest(
            messages=tuple(_messages(task, config)), assistant_prefix=config.prefill,
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=s, stop=config.stop,
        )
        async with sem:
            gen = await backend.generate(req)
        ok, status = await asyncio.to_thread(_score, sandbox, task, gen.text)
        r = Rollout(task.task_id, sample, s, temperature, gen.text, gen.n_tokens, ok, status)
        async with lock:
            with cache.open("a") as f:
                f.write(json.dumps(asdict(r)) + "\n")
            count += 1
            passed += ok
            if counter is not None:
                counter.update(count, f" attempts ({passed} passed)")

    await asyncio.gather(*(one(ti, s) for ti, s in todo))
    if counter is not None:
        counter.close()


def collect_rollouts(
    backend: Any,
    sandbox: Any,
    tasks: Sequence[Task],
    *,
    cache: str | Path,
    samples: int = 4,
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_new_tokens: int = 320,
    concurrency: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> list[Rollout]:
    """Sample ``samples`` attempts per task (those in ``cache`` are reused) and return all of them.

    ``backend`` is a :class:`~valueagent.runtime.backend.HFBackend` (no axis needed); ``sandbox`` has
    ``score_humaneval(prompt, completion, test, entry_point)``.
    """
    if any(t.task_id.startswith("HumanEval/") for t in tasks):
        raise ValueError("rollouts for the value probe must not use HumanEval tasks: HumanEval is the eval set")
    path = Path(cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _load_cache(path)
    config = PromptConfig()
    todo = [(ti, s) for ti, t in enumerate(tasks) for s in range(samples) if (t.task_id, s) not in done]
    if todo:
        asyncio.run(_run(backend, sandbox, tasks, todo, cache=path, temperature=temperature, top_p=top_p,
                         max_new_tokens=max_new_tokens, concurrency=concurrency, seed=seed, config=config,
                         progress=progress))
        done = _load_cache(path)
    return [done[(t.task_id, s)] for t in tasks for s in range(samples) if (t.task_id, s) in done]
