"""The async runner: one complete line per task, resume after a torn last line, errors, the CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.agent_helpers import PROMPT, SENTINEL, seg
from tests.fakes import ScriptedBackend, ScriptedSandbox, Step
from valueagent.runner import RESULTS, ResultsFile, RunConfig, read_results, run_tasks
from valueagent.tasks import Task

TASKS = tuple(Task(f"t/{i}", PROMPT, "f", f"assert True  # {SENTINEL}\n") for i in range(4))


def _script(request: Any, i: int) -> Step:
    good = "GOOD" if i % 2 == 0 else "BAD"
    return seg(f"def f(x):\n    return x + 1  # {good}\n```", [0.7] * 4, end=True)


async def _run(out: Path, *, resume: bool = False, policies: tuple[str, ...] = ("single",),
               backend: ScriptedBackend | None = None) -> Any:
    backend = backend or ScriptedBackend(_script)
    config = RunConfig(policies=policies, output_dir=out, concurrency=3, resume=resume, seed=5)
    return await run_tasks(TASKS, backend=backend, sandbox=ScriptedSandbox(), config=config), backend


async def test_writes_one_complete_record_per_task_and_policy(tmp_path: Path) -> None:
    outcome, _ = await _run(tmp_path, policies=("single", "always-test"))
    records = read_results(tmp_path)
    assert outcome.done == 8 and not outcome.errors
    assert sorted((r["task_id"], r["policy"]) for r in records) == sorted(
        (t.task_id, p) for t in TASKS for p in ("single", "always-test"))
    need = {"task_id", "policy", "passed", "test_runs", "backtracks", "revisions", "tokens", "wall_s",
            "value_trace", "transcript", "completion", "sampling", "final_values", "settings"}
    for r in records:
        assert need <= set(r)
        assert r["sampling"]["resample"] == {"temperature": 0.8, "top_p": 0.95}
        assert SENTINEL not in json.dumps([r["transcript"], r["value_trace"], r["completion"]])
    assert (tmp_path / RESULTS).read_bytes().endswith(b"\n")


async def test_resume_after_torn_last_line_redoes_exactly_that_task(tmp_path: Path) -> None:
    await _run(tmp_path)
    path = tmp_path / RESULTS
    lines = path.read_bytes().splitlines(keepends=True)
    torn = json.loads(lines[-1])["task_id"]
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # SIGKILL mid-write
    outcome, backend = await _run(tmp_path, resume=True)
    assert outcome.repaired and outcome.done == 1 and outcome.skipped == 3
    assert len(backend.requests) == 1
    records = read_results(tmp_path)
    assert sorted(r["task_id"] for r in records) == sorted(t.task_id for t in TASKS)
    assert records[-1]["task_id"] == torn
    again, backend = await _run(tmp_path, resume=True)
    assert again.done == 0 and again.skipped == 4 and not again.repaired and backend.requests == []


async def test_refuses_to_overwrite_and_detects_corruption_mid_file(tmp_path: Path) -> None:
    await _run(tmp_path)
    with pytest.raises(FileExistsError, match="--resume"):
        await _run(tmp_path)
    path = tmp_path / RESULTS
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "{not json\n" + "".join(lines[1:]))
    with pytest.raises(ValueError, match=":2 is corrupt"):
        ResultsFile(path).load()


async def test_a_failing_task_writes_no_line_and_is_redone_on_resume(tmp_path: Path) -> None:
    def flaky(request: Any, i: int) -> Step:
        if "t/2" in str(request.messages) or i == 1:
            raise RuntimeError("backend fell over")
        return _script(request, i)

    first, _ = await _run(tmp_path, backend=ScriptedBackend(flaky))
    assert first.errors and first.done == 4 - len(first.errors)
    assert len(read_results(tmp_path)) == first.done
    second, _ = await _run(tmp_path, resume=True)
    assert second.done == len(first.errors) and not second.errors
    assert sorted(r["task_id"] for r in read_results(tmp_path)) == sorted(t.task_id for t in TASKS)


def test_cli_run_and_calibrate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from valueagent.cli import agent_cmd
    from valueagent.cli.main import app

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in TASKS))
    monkeypatch.setattr(agent_cmd, "load_backend_or_fail", lambda *a, **k: ScriptedBackend(_script))
    # The real package stays importable (its submodules too); only its Sandbox is scripted.
    monkeypatch.setattr("valueagent.sandbox.Sandbox", lambda workers=4: ScriptedSandbox())
    runner = CliRunner()
    out = tmp_path / "run"
    fake = ["--model", "fake/scripted"]  # the model id the fake reports: no axis, no shipped calibration
    res = runner.invoke(app, ["run", str(tasks), "--policy", "single,value", "--output-dir", str(out),
                              "--limit", "3", *fake])
    assert res.exit_code == 2 and "valueagent calibrate" in res.output and "--uncalibrated" in res.output
    assert not out.exists()
    res = runner.invoke(app, ["run", str(tasks), "--policy", "single,value", "--output-dir", str(out),
                              "--limit", "3", "--uncalibrated", *fake])
    assert res.exit_code == 0, res.output
    assert len(read_results(out)) == 6
    res = runner.invoke(app, ["run", str(tasks), "--policy", "single", "--output-dir", str(out)])
    assert res.exit_code != 0 and "--resume" in res.output
    res = runner.invoke(app, ["run", str(tasks), "--policy", "single", "--output-dir", str(out), "--resume"])
    assert res.exit_code == 0 and len(read_results(out)) == 7
    gate = tmp_path / "gate.json"
    res = runner.invoke(app, ["calibrate", str(out), "-o", str(gate), "--segment-tokens", "2"])
    assert res.exit_code == 0, res.output
    doc = json.loads(gate.read_text())
    assert set(doc["policies"]) == {"value", "logprob-gate", "value+logprob", "random-gate"}
    res = runner.invoke(app, ["run", str(tasks), "--policy", "value", "--gate-config", str(gate),
                              "--output-dir", str(tmp_path / "r2"), *fake])
    assert res.exit_code != 0 and "calibration" in res.output  # calibration tasks are refused
    assert doc["reading"]["model_id"] == "fake/scripted" and doc["reading"]["axis_layer"] == 1
    others = tmp_path / "others.jsonl"
    others.write_text("".join(json.dumps({**t.to_dict(), "task_id": "o/" + t.task_id}) + "\n" for t in TASKS))
    doc["reading"]["model_id"] = "other/model"  # thresholds measured on another model's reading
    gate.write_text(json.dumps(doc))
    res = runner.invoke(app, ["run", str(others), "--policy", "value", "--gate-config", str(gate),
                              "--output-dir", str(tmp_path / "r3"), *fake])
    assert res.exit_code != 0 and "calibrated on another reading" in res.output and "other/model" in res.output
    assert not (tmp_path / "r3").exists()
    res = runner.invoke(app, ["run", str(tasks), "--policy", "nope"])
    assert res.exit_code != 0 and "unknown policy" in res.output


class _Slow(ScriptedBackend):
    async def generate(self, request: Any) -> Any:
        await asyncio.sleep(0.03)
        return await super().generate(request)


async def test_cancelled_run_leaves_complete_lines_and_resumes(tmp_path: Path) -> None:
    tasks = tuple(Task(f"s/{i}", PROMPT, "f", "assert True\n") for i in range(12))
    config = RunConfig(policies=("always-test",), output_dir=tmp_path, concurrency=2)
    seen: list[str] = []

    def on_result(record: dict[str, Any]) -> None:
        seen.append(record["task_id"])
        if len(seen) == 3:
            run.cancel()  # what Ctrl-C does to asyncio.run: cancel the main task

    run = asyncio.ensure_future(run_tasks(tasks, backend=_Slow(_script), sandbox=ScriptedSandbox(),
                                          config=config, on_result=on_result))
    with pytest.raises(asyncio.CancelledError):
        await run
    data = (tmp_path / RESULTS).read_bytes() if (tmp_path / RESULTS).exists() else b""
    assert data.endswith(b"\n") or not data
    done = [json.loads(line) for line in data.splitlines()]
    assert 3 <= len(done) < 12
    config = RunConfig(policies=("always-test",), output_dir=tmp_path, concurrency=4, resume=True)
    outcome = await run_tasks(tasks, backend=ScriptedBackend(_script), sandbox=ScriptedSandbox(), config=config)
    assert outcome.skipped == len(done) and outcome.done == 12 - len(done)
    assert sorted(r["task_id"] for r in read_results(tmp_path)) == sorted(t.task_id for t in tasks)
