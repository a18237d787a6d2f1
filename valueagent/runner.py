"""Run agent policies over many tasks concurrently, appending one complete JSON line per finished task.

All tasks share one backend (whose worker batches concurrent requests) and one sandbox pool. A task's
record is written only after its hidden tests were scored in the sandbox, as one ``write`` of a complete
line followed by ``flush`` and ``fsync``; an interrupted run therefore leaves complete lines only, and a
torn last line (SIGKILL, full disk) is detected and redone by ``resume``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from valueagent.agent.factory import agent_settings, build_graph, sandbox_provider
from valueagent.agent.gate import GateConfig
from valueagent.agent.policies import policy_spec
from valueagent.agent.settings import EVENT
from valueagent.agent.state import Budgets, agent_input
from valueagent.runtime.generation import ValueBackend
from valueagent.tasks import Task

log = logging.getLogger(__name__)
RESULTS = "results.jsonl"


class RunnerSandbox(Protocol):
    """The sandbox the runner needs: visible cases for the agent, hidden tests for scoring."""

    async def arun_cases(self, solution: str, cases: Sequence[Any]) -> Sequence[Any]: ...

    def score_humaneval(self, prompt: str, completion: str, test: str, entry_point: str) -> Any: ...


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What to run: policies over tasks, budgets, calibrated gate configs and recorded metadata."""

    policies: tuple[str, ...]
    output_dir: Path
    concurrency: int = 4
    resume: bool = False
    seed: int = 0
    budgets: Budgets = field(default_factory=Budgets)
    gate_configs: Mapping[str, GateConfig] = field(default_factory=dict)
    segment_tokens: int = 32
    answer_tokens: int = 512
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class RunOutcome:
    done: int = 0  # records written by this run
    skipped: int = 0  # (task, policy) pairs already in the file
    repaired: bool = False  # a torn last line was dropped
    errors: dict[str, str] = field(default_factory=dict)  # "task_id|policy" -> error (no line written)


class ResultsFile:
    """``DIR/results.jsonl``: read back (repairing a torn last line) and appended to atomically per line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[list[dict[str, Any]], bool]:
        """The complete records, and whether a torn or corrupt last line was cut off the file."""
        if not self.path.exists():
            return [], False
        data = self.path.read_bytes()
        *complete, _tail = data.split(b"\n")  # _tail is empty unless the last line is torn
        records: list[dict[str, Any]] = []
        good_end = 0
        for i, raw in enumerate(complete):
            if raw.strip():
                try:
                    rec = json.loads(raw)
                except json.JSONDecodeError:
                    rec = None
                if not isinstance(rec, dict) or "task_id" not in rec or "policy" not in rec:
                    if any(x.strip() for x in complete[i + 1 :]):
                        raise ValueError(f"{self.path}:{i + 1} is corrupt in the middle of the file; "
                                         "fix or delete that line, then rerun with --resume")
                    break
                records.append(rec)
            good_end += len(raw) + 1
        repaired = good_end < len(data)
        if repaired:
            os.truncate(self.path, good_end)
        return records, repaired

    def append(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)


def task_seed(seed: int, task_id: str) -> int:
    """A per-task seed independent of task order and concurrency."""
    return int(hashlib.sha256(f"{seed}:{task_id}".encode()).hexdigest()[:8], 16)


async def score_hidden(sandbox: RunnerSandbox, task: Task, completion: str) -> tuple[bool, str]:
    """Run the hidden tests (scoring only, after the agent finished): ``(passed, status[: detail])``."""
    fn = getattr(sandbox, "ascore_humaneval", None)
    args = (task.prompt, completion, task.test, task.entry_point)
    result = await fn(*args) if fn is not None else await asyncio.to_thread(sandbox.score_humaneval, *args)
    status = str(getattr(result, "status", result))
    detail = str(getattr(result, "detail", "") or "")
    return status == "passed", f"{status}: {detail}" if detail else status


def make_record(
    task: Task, policy: str, out: Mapping[str, Any], *, passed: bool, status: str, wall_s: float,
    settings: Mapping[str, Any], seed: int, meta: Mapping[str, Any],
) -> dict[str, Any]:
    """The per-task result line."""
    used = out["used"]
    candidates = [{k: v for k, v in c.items() if k not in ("values", "logprobs")} for c in out["candidates"]]
    return {
        "task_id": task.task_id, "policy": policy, "passed": passed, "hidden_status": status,
        "test_runs": used["test_runs"], "backtracks": used["backtracks"], "revisions": used["revisions"],
        "tokens": used["tokens"], "prompt_tokens": out.get("prompt_tokens", 0), "wall_s": round(wall_s, 3),
        "completion": out.get("completion", ""), "code": out.get("code", ""),
        "stop_reason": out.get("stop_reason", ""),
        "value_trace": out["trace"], "transcript": out["transcript"],
        "visible_tests": out["tests"], "candidates": candidates,
        "final_values": out.get("final_values", []), "final_logprobs": out.get("final_logprobs", []),
        "sampling": {**settings["sampling"], "calls": out.get("sampling_log", [])},
        "settings": settings, "seed": seed, "meta": dict(meta), "error": None,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


EventCallback = Callable[[str, str, dict[str, Any]], None]
"""``on_event(task_id, policy, event)``: an agent stream event of one (task, policy) pair."""


async def run_tasks(
    tasks: Iterable[Task],
    *,
    backend: ValueBackend,
    sandbox: RunnerSandbox,
    config: RunConfig,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_event: EventCallback | None = None,
) -> RunOutcome:
    """Run every (task, policy) pair not yet in ``results.jsonl`` with at most ``concurrency`` in flight.

    ``on_result(record)`` follows each finished pair; ``on_event(task_id, policy, event)`` each of the agent's
    ``valueagent/value`` stream events inside a pair (readings, tests, backtracks), as they happen."""
    config.output_dir.mkdir(parents=True, exist_ok=True)
    results = ResultsFile(config.output_dir / RESULTS)
    outcome = RunOutcome()
    if results.path.exists() and results.path.stat().st_size and not config.resume:
        raise FileExistsError(f"{results.path} already has results: pass --resume to continue that run, "
                              "or choose another --output-dir")
    existing, outcome.repaired = results.load()
    finished = {(r["task_id"], r["policy"]) for r in existing}
    graphs, described = {}, {}
    provider = sandbox_provider(sandbox)
    for policy in config.policies:
        spec = policy_spec(policy)
        gate_config = config.gate_configs.get(policy) or config.gate_configs.get(spec.calibration or policy)
        settings = agent_settings(policy, gate_config=gate_config, budgets=config.budgets,
                                  segment_tokens=config.segment_tokens, answer_tokens=config.answer_tokens)
        graphs[policy] = build_graph(backend, settings, provider).compile()
        described[policy] = settings.describe()
    jobs = [(t, p) for t in tasks for p in config.policies]
    outcome.skipped = sum((t.task_id, p) in finished for t, p in jobs)
    todo = [(t, p) for t, p in jobs if (t.task_id, p) not in finished]
    gate = asyncio.Semaphore(max(1, config.concurrency))
    lock = asyncio.Lock()

    async def one(task: Task, policy: str) -> None:
        async with gate:
            seed = task_seed(config.seed, task.task_id)
            start = time.perf_counter()
            try:
                out = await _invoke(graphs[policy], agent_input(task.public(), seed=seed),
                                    None if on_event is None else partial(on_event, task.task_id, policy))
                passed, status = await score_hidden(sandbox, task, out.get("completion", ""))
            except Exception as exc:  # one task's failure must not lose the others
                log.exception("task %s (%s) failed", task.task_id, policy)
                outcome.errors[f"{task.task_id}|{policy}"] = f"{type(exc).__name__}: {exc}"
                return
            record = make_record(task, policy, out, passed=passed, status=status,
                                 wall_s=time.perf_counter() - start, settings=described[policy], seed=seed,
                                 meta=config.meta)
            async with lock:
                results.append(record)
                outcome.done += 1
            if on_result is not None:
                on_result(record)

    await asyncio.gather(*(one(t, p) for t, p in todo))
    return outcome


async def _invoke(graph: Any, inputs: Any, on_event: Callable[[dict[str, Any]], None] | None) -> Any:
    """The graph's output, passing its custom stream events to ``on_event`` as they come (if given)."""
    config = {"recursion_limit": 1000}
    if on_event is None:
        return await graph.ainvoke(inputs, config=config)
    out = None
    async for mode, chunk in graph.astream(inputs, config=config, stream_mode=["custom", "values"]):
        if mode == "values":
            out = chunk  # the last one is what ainvoke returns
        elif isinstance(chunk, dict) and chunk.get("event") == EVENT:
            on_event(chunk)
    return out


def read_results(output_dir: str | Path) -> list[dict[str, Any]]:
    """The complete records of a run directory (a torn last line is ignored, the file left as is)."""
    path = Path(output_dir) / RESULTS
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines(keepends=True):
        if line.endswith("\n"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
