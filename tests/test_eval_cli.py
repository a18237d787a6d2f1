"""`valueagent eval humaneval` end to end on the scripted fake backend and sandbox (real HumanEval tasks)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.fakes import ScriptedBackend, ScriptedSandbox, Step
from valueagent.agent.gate import GateConfig
from valueagent.cli import eval_cmd
from valueagent.cli.main import app
from valueagent.eval.humaneval import select_tasks
from valueagent.runtime.generation import GenerationRequest

MARK = "VA_GOOD_MARK"
runner = CliRunner()
POLICIES = "value,always-test,single"


def _good(prompt: str) -> bool:
    return len(prompt) % 2 == 0  # a fixed, task-dependent mix of passing and failing tasks


def _script(request: GenerationRequest, i: int) -> Step:
    prompt = (request.messages or ({"content": ""},))[0]["content"]
    name = (re.findall(r"def (\w+)\(", prompt) or ["f"])[-1]
    good = _good(prompt)
    body = f"def {name}(*args):\n    return '{MARK if good else 'BAD'}'\n```"
    return Step(body, [0.9 if good else 0.1] * 6, [-0.1 if good else -1.5] * 6, "stop")


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    made: dict[str, Any] = {}

    def backend(*args: Any) -> ScriptedBackend:
        made["backend"] = ScriptedBackend(_script)
        return made["backend"]

    def sandbox(workers: int) -> ScriptedSandbox:
        made["sandbox"] = ScriptedSandbox(lambda program: MARK in program)
        return made["sandbox"]

    monkeypatch.setattr(eval_cmd, "make_backend", backend)
    monkeypatch.setattr(eval_cmd, "make_sandbox", sandbox)
    return made


def _eval(out: Path, *extra: str) -> Any:
    """The eval on the fakes; ``--uncalibrated`` unless a ``--gate-config`` is given (the calibration shipped
    with the embedded model's axis is refused for the fake backend's reading)."""
    gate = () if "--gate-config" in extra else ("--uncalibrated",)
    args = ["eval", "humaneval", "--policies", POLICIES, "--limit", "8", "--output-dir", str(out),
            "--concurrency", "3", "--n-boot", "200", *gate, *extra]
    return runner.invoke(app, args)


def test_eval_humaneval_writes_the_run_directory(tmp_path: Path, fakes: dict[str, Any]) -> None:
    out = tmp_path / "run"
    res = _eval(out, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    tasks = select_tasks("eval", limit=8)
    n_good = sum(_good(f"```python\n{t.prompt.rstrip()}\n```") for t in tasks)
    assert 0 < n_good < 8
    for policy in POLICIES.split(","):
        assert summary["policies"][policy]["n"] == 8
        assert summary["policies"][policy]["passed"] == n_good
    assert summary["policies"]["single"]["test_runs_mean"] == 0
    for name in ("config.json", "results.jsonl", "summary.json", "samples.jsonl", "report.md", "frontier.png"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["model_id"] == "fake/scripted" and cfg["dataset"]["n_tasks"] == 8
    assert cfg["dataset"]["task_ids"] == [t.task_id for t in tasks] and cfg["seeds"]["seed"] == 0
    assert cfg["dataset"]["hash"].startswith("sha256:") and "versions" in cfg and "git" in cfg
    assert len((out / "samples.jsonl").read_text().splitlines()) == 24
    assert not set(cfg["dataset"]["task_ids"]) & set(t.task_id for t in select_tasks("calibration"))
    # the hidden tests were run by the sandbox, never shown to the model
    assert len(fakes["sandbox"].hidden) == 24
    seen = " ".join(m["content"] for r in fakes["backend"].requests for m in (r.messages or ()))
    assert all(t.test.strip()[:60] not in seen for t in tasks)


def test_resume_fail_under_and_existing_dir(tmp_path: Path, fakes: dict[str, Any]) -> None:
    out = tmp_path / "run"
    assert _eval(out).exit_code == 0
    again = _eval(out)
    assert again.exit_code == 2 and "--resume" in again.output
    results = out / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a torn last line
    resumed = _eval(out, "--resume", "--fail-under", "0.99")
    assert resumed.exit_code == 1 and "fail-under: value" in resumed.output
    recs = [json.loads(x) for x in results.read_text().splitlines()]
    assert len(recs) == 24 and len({(r["task_id"], r["policy"]) for r in recs}) == 24
    assert json.loads((out / "config.json").read_text())["resumed"]
    assert _eval(out, "--resume", "--fail-under", "0.01").exit_code == 0


def test_bad_arguments_fail_before_loading_a_model(tmp_path: Path, fakes: dict[str, Any]) -> None:
    res = runner.invoke(app, ["eval", "humaneval", "--policies", "value,nope", "--output-dir", str(tmp_path)])
    assert res.exit_code == 2 and "unknown policy" in res.output
    res = runner.invoke(app, ["eval", "humaneval", "--policies", "single", "--task-ids", "HumanEval/1",
                              "--output-dir", str(tmp_path)])
    assert res.exit_code == 2 and "split" in res.output  # HumanEval/1 is a calibration task
    assert "backend" not in fakes


def test_gate_config_must_be_disjoint_and_normalizes_every_policy(tmp_path: Path, fakes: dict[str, Any]) -> None:
    value = GateConfig(signal="value", value_baseline=(0.5, 0.0), value_scale=0.2, accept_above=1.0)
    doc = {"format": "valueagent.gate-calibration/1", "segment_tokens": 16, "task_ids": ["HumanEval/1"],
           "policies": {"value": value.to_dict()}}
    cal = tmp_path / "gate.json"
    cal.write_text(json.dumps(doc))
    out = tmp_path / "run"
    res = _eval(out, "--gate-config", str(cal))
    assert res.exit_code == 0, res.output
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert {tuple(r["settings"]["gate"]["value_baseline"]) for r in recs} == {(0.5, 0.0)}
    finals = [t for r in recs for t in r["value_trace"] if t["kind"] == "final"]
    assert {round(t["value_norm"], 6) for t in finals} <= {2.0, -2.0}  # (0.9 - 0.5) / 0.2, (0.1 - 0.5) / 0.2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reading"]["by_policy"]["value"]["n"] == 8
    doc["task_ids"] = [select_tasks("eval", limit=1)[0].task_id]
    cal.write_text(json.dumps(doc))
    res = _eval(tmp_path / "run2", "--gate-config", str(cal))
    assert res.exit_code == 2 and "disjoint" in res.output
    # thresholds read on another axis of the same model are in other units: refused, nothing written
    doc["task_ids"] = ["HumanEval/1"]
    doc["reading"] = {"model_id": "fake/scripted", "axis_layer": 7, "axis_sha256": None}
    cal.write_text(json.dumps(doc))
    res = _eval(tmp_path / "run3", "--gate-config", str(cal))
    assert res.exit_code == 2 and "another reading" in res.output and "axis_layer 7" in res.output
    assert not (tmp_path / "run3" / "results.jsonl").exists()


def test_eval_humaneval_on_tiny_qwen3_and_real_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        tiny_model: Any, tiny_tokenizer: Any) -> None:
    """The real HF backend (a tiny random Qwen3 with an axis) and the real sandbox, end to end."""
    import warnings

    from tests.test_backend import make_axis
    from valueagent.runtime.backend import HFBackend

    axis = make_axis(tiny_model)
    backend = HFBackend(tiny_model, tiny_tokenizer, model_id="tiny", axis=axis)
    monkeypatch.setattr(eval_cmd, "make_backend", lambda *a: backend)
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a weaker isolation level than bubblewrap warns; fine for garbage
        res = runner.invoke(app, ["eval", "humaneval", "--policies", "single,value", "--limit", "2",
                                  "--output-dir", str(out), "--answer-tokens", "24", "--max-tokens", "48",
                                  "--n-boot", "200", "--workers", "2", "--uncalibrated"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["axis"]["sha256"] == axis.sha256 and cfg["model"]["model_id"] == "tiny"
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["task_id"], r["policy"]) for r in recs) == sorted(
        (t.task_id, p) for t in select_tasks("eval", limit=2) for p in ("single", "value"))
    assert all(any(t["kind"] == "final" and t["value"] is not None for t in r["value_trace"]) for r in recs)
    assert (out / "report.md").is_file()


def test_progress_off_a_terminal_prints_one_line_per_item(capsys) -> None:
    from valueagent.cli.progress import TaskProgress

    with TaskProgress("humaneval") as progress:
        progress.start(3, done=1)
        progress.advance("single 1/1")
        progress.advance("single 2/2  " + "always-test 1/1  " * 10)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "humaneval: 3 to run, 1 already done"
    assert err[1].startswith("humaneval 2/3 [0:0") and err[1].endswith("single 1/1")
    assert err[2].startswith("humaneval 3/3") and len(err) == 3  # never wrapped
    assert "left]" in err[1] and "left" not in err[2]  # an estimate while items remain, none at the end


def test_progress_estimates_time_left_from_this_runs_own_rate(monkeypatch, capsys) -> None:
    import time

    from valueagent.cli.progress import TaskProgress

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    with TaskProgress("humaneval") as progress:
        progress.start(10, done=6)  # six from an earlier run: they took no time in this one
        now[0] += 60.0
        progress.advance("a")  # 1 item in 60 s, 3 left
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith("humaneval 7/10 [1:00, ~3:00 left]"), line


def test_shards_merge_into_the_run_one_process_would_have_written(tmp_path: Path, fakes: dict[str, Any]) -> None:
    """Two shards (disjoint --task-ids) merged give the records and summary of one run over all their tasks;
    a pair twice, another experiment or an occupied output is one line, and the shards are left unchanged."""
    ids = [t.task_id for t in select_tasks("eval", limit=8)]
    assert _eval(tmp_path / "whole").exit_code == 0
    assert _eval(tmp_path / "a", "--task-ids", ",".join(ids[:3])).exit_code == 0
    assert _eval(tmp_path / "b", "--task-ids", ",".join(ids[3:])).exit_code == 0
    before = {p: p.read_bytes() for p in tmp_path.glob("[ab]/*") if p.is_file()}
    out = tmp_path / "merged"
    res = runner.invoke(app, ["eval", "merge", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out),
                              "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    assert {p: p.read_bytes() for p in tmp_path.glob("[ab]/*") if p.is_file()} == before

    def pairs(run: Path) -> dict[tuple[str, str], tuple[bool, int, int]]:
        recs = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
        return {(r["task_id"], r["policy"]): (r["passed"], r["tokens"], r["test_runs"]) for r in recs}

    assert pairs(out) == pairs(tmp_path / "whole")
    merged, whole = (json.loads((run / "summary.json").read_text()) for run in (out, tmp_path / "whole"))
    for policy in POLICIES.split(","):
        assert merged["policies"][policy]["passed"] == whole["policies"][policy]["passed"]
        assert merged["policies"][policy]["n"] == 8
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["dataset"]["task_ids"] == ids and len(cfg["merged_from"]) == 2
    assert cfg["dataset"]["hash"] == json.loads((tmp_path / "whole" / "config.json").read_text())["dataset"]["hash"]
    assert merged["merged_shards"] == 2 and (out / "report.md").is_file()

    def refused(*args: str) -> str:
        r = runner.invoke(app, ["eval", "merge", *args, "--n-boot", "200"])
        assert r.exit_code == 2, r.output
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1, r.output
        return lines[0]

    assert "already holds a run: pass --overwrite" in refused(str(tmp_path / "a"), "-o", str(out))
    assert "is in both" in refused(str(tmp_path / "a"), str(tmp_path / "whole"), "-o", str(tmp_path / "m2"))
    assert _eval(tmp_path / "c", "--task-ids", ids[0], "--seed", "7").exit_code == 0
    assert "seeds.seed" in refused(str(tmp_path / "b"), str(tmp_path / "c"), "-o", str(tmp_path / "m3"))
    assert "is one of the shards" in refused(str(tmp_path / "a"), "-o", str(tmp_path / "a"))
    assert "not a run directory" in refused(str(tmp_path / "nothing"), "-o", str(tmp_path / "m4"))
    assert not (tmp_path / "m2").exists() and not (tmp_path / "m3").exists()
    # the shards went on (here: nothing new) and the merge is rewritten on request
    assert runner.invoke(app, ["eval", "merge", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out),
                               "--overwrite", "--n-boot", "200"]).exit_code == 0
