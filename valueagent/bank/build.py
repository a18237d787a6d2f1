"""Build a sample bank: per task, the greedy answer and N fresh samples in one batch that shares the
prompt's prefill, each with its per-token readings, visible-test verdicts and hidden verdict.

Prompts, prefill, stop string, answer length and the seed rule are the agent's own
(``valueagent.agent``), so a whole-answer policy replayed from the bank reproduces a live run. Hidden
tests are run only to record a sample's verdict for scoring; a policy replayed from the bank sees them
only through its final score.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from valueagent.agent.nodes import SEED_STRIDE
from valueagent.agent.prompts import PromptConfig, completion_for, extract_code, program_for, task_messages
from valueagent.bank.store import (
    BankError,
    BankManifest,
    done_task_ids,
    read_manifest,
    task_file,
    write_manifest,
    write_task,
)
from valueagent.runner import RunnerSandbox, score_hidden, task_seed
from valueagent.runtime.decoding import TOP_K
from valueagent.runtime.generation import Generation, GenerationRequest, ValueBackend
from valueagent.signals import trace_record
from valueagent.tasks import Task

SEED_RULE = "greedy: temperature 0; sample j (1..N): seed = task_seed(seed, task_id) * 1000003 + j"
PROGRESS = "progress.json"


@dataclass(frozen=True, kw_only=True)
class BankSpec:
    """How to sample: N fresh samples per task besides the greedy answer."""

    samples: int = 8
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    max_new_tokens: int = 512
    concurrency: int = 2  # tasks in flight (each one a batch of N + 1 rows)

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise BankError(f"--samples must be >= 1 (got {self.samples}): a bank ranks N fresh samples per task")
        if not 0 < self.temperature or not 0 < self.top_p <= 1:
            raise BankError("--temperature must be > 0 and --top-p in (0, 1] for fresh samples")
        if self.max_new_tokens < 1 or self.concurrency < 1:
            raise BankError("--max-new-tokens and --concurrency must be >= 1")


def sample_seed(seed: int, task_id: str, j: int) -> int:
    return task_seed(seed, task_id) * SEED_STRIDE + j


def requests_for(task: Task, spec: BankSpec, prompt: PromptConfig) -> list[GenerationRequest]:
    """The greedy request (index 0) and the N sampled ones, exactly as the agent would send them."""
    messages = tuple(task_messages(task.public().to_dict(), prompt))  # type: ignore[arg-type]
    common: dict[str, Any] = dict(messages=messages, assistant_prefix=prompt.prefill,
                                  max_new_tokens=spec.max_new_tokens, stop=prompt.stop, hidden_mean=True)
    out = [GenerationRequest(**common, temperature=0.0, seed=task_seed(spec.seed, task.task_id) * SEED_STRIDE)]
    for j in range(1, spec.samples + 1):
        out.append(GenerationRequest(**common, temperature=spec.temperature, top_p=spec.top_p,
                                     seed=sample_seed(spec.seed, task.task_id, j)))
    return out


def manifest_for(backend: ValueBackend, spec: BankSpec, prompt: PromptConfig, tasks_source: str,
                 weights: str) -> BankManifest:
    info = backend.info()
    return BankManifest(
        model_id=info.model_id, revision=info.revision, weights=weights, dtype=info.dtype,
        quantization=info.quantization, axis=info.axis, axis_layer=info.axis_layer, axis_sha256=info.axis_sha256,
        samples=spec.samples, temperature=spec.temperature, top_p=spec.top_p, seed=spec.seed, seed_rule=SEED_RULE,
        max_new_tokens=spec.max_new_tokens, prefill=prompt.prefill, stop=tuple(prompt.stop), top_k=TOP_K,
        tasks_source=tasks_source, backend=info.backend,
    )


def check_output_dir(root: Path, resume: bool) -> bool:
    """Whether ``root`` already holds a bank (then ``resume`` must be asked for); an error that says what to do
    when it is a file, another folder's contents, or a bank without ``--resume``. Needs no model."""
    if root.exists() and not root.is_dir():
        raise BankError(f"--output-dir {root} is a file: choose a directory")
    if not (root / "bank.json").exists():
        if root.is_dir() and any(root.iterdir()):
            raise BankError(f"--output-dir {root} is not empty and holds no bank: choose an empty or new directory")
        return False
    if not resume:
        raise BankError(f"{root} already holds a bank: pass --resume to continue it, or choose another --output-dir")
    return True


def check_resume(root: Path, manifest: BankManifest, resume: bool) -> set[str]:
    """Task ids already in the bank at ``root`` (a bank made the same way), or an error that says what to do."""
    if not check_output_dir(root, resume):
        return set()
    old = read_manifest(root)
    if diff := old.differences(manifest):
        raise BankError(f"{root} was built with other settings ({', '.join(diff)} differ): resume it with the "
                        "same model, backend, axis, quantization and sampling, or choose another --output-dir")
    return done_task_ids(root)


async def sample_task(backend: ValueBackend, sandbox: RunnerSandbox, task: Task, spec: BankSpec,
                      prompt: PromptConfig) -> dict[str, Any]:
    """One task's record: N + 1 generations in one batch, then their visible and hidden verdicts."""
    reqs = requests_for(task, spec, prompt)
    start = time.perf_counter()
    gens: Sequence[Generation] = await asyncio.gather(*(backend.generate(r) for r in reqs))
    gen_s = time.perf_counter() - start
    public = task.public()
    verdicts: dict[str, tuple[list[bool], bool, str]] = {}  # identical code is run once
    samples = []
    for j, (req, gen) in enumerate(zip(reqs, gens, strict=True)):
        code = extract_code(prompt.prefill + gen.text, task.entry_point)
        if code not in verdicts:
            cases = await sandbox.arun_cases(program_for(task.prompt, code, task.entry_point), public.visible_tests)
            passed, status = await score_hidden(sandbox, task, completion_for(code, task.entry_point))
            verdicts[code] = ([bool(c.passed) for c in cases], passed, status)
        visible, hidden, status = verdicts[code]
        samples.append({
            "index": j, "kind": "greedy" if j == 0 else "sample", "seed": req.seed,
            "temperature": req.temperature, "top_p": req.top_p,
            "text": gen.text, "code": code, "finish_reason": gen.finish_reason,
            "token_ids": list(gen.token_ids),
            **trace_record(gen.values, gen.logprobs, gen.entropies, gen.top_logprobs, gen.hidden_mean),
            "visible": visible, "hidden_passed": hidden, "hidden_status": status[:200],
        })
    return {"task_id": task.task_id, "visible_total": len(public.visible_tests),
            "prompt_tokens": gens[0].prompt_tokens, "generate_s": round(gen_s, 2), "samples": samples}


async def build_bank(
    tasks: Sequence[Task], *, backend: ValueBackend, sandbox: RunnerSandbox, root: Path, spec: BankSpec,
    manifest: BankManifest, resume: bool, prompt: PromptConfig | None = None,
    on_task: Callable[[dict[str, Any], int, int], None] | None = None,
) -> tuple[int, int]:
    """Sample every task not yet in the bank at ``root``; returns ``(written, skipped)``. A task whose file
    appears while this build runs (another builder on the same bank, e.g. ``--reverse``) is skipped too."""
    prompt = prompt or PromptConfig()
    done = check_resume(root, manifest, resume)
    write_manifest(root, manifest)
    todo = [t for t in tasks if t.task_id not in done]
    gate = asyncio.Semaphore(spec.concurrency)
    written = 0
    started = time.time()
    tokens = 0

    skipped = len(done)

    async def one(task: Task) -> None:
        nonlocal written, tokens, skipped
        async with gate:
            if task_file(root, task.task_id).exists():
                skipped += 1
                return
            record = await sample_task(backend, sandbox, task, spec, prompt)
        write_task(root, record)
        written += 1
        tokens += sum(len(s["token_ids"]) for s in record["samples"])
        elapsed = time.time() - started
        progress = {"done": skipped + written, "total": len(done) + len(todo), "written_this_run": written,
                    "elapsed_s": round(elapsed), "tokens_this_run": tokens,
                    "tokens_per_s": round(tokens / max(elapsed, 1e-9), 2),
                    "eta_s": round(elapsed / written * (len(done) + len(todo) - skipped - written)),
                    "last": task.task_id}
        tmp = root / f"{PROGRESS}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(progress) + "\n")
        os.replace(tmp, root / PROGRESS)
        if on_task is not None:
            on_task(progress, written, len(todo))

    await asyncio.gather(*(one(t) for t in todo))
    return written, skipped
