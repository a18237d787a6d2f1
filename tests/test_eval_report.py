"""The run's human-facing files: summary.json, samples.jsonl, report.md and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.eval_helpers import config, informative_records, outcomes, record, write_run
from valueagent.cli.main import app
from valueagent.eval.report import write_run_outputs

PNG = b"\x89PNG\r\n\x1a\n"


def _run(tmp_path: Path) -> Path:
    recs = informative_records("value", outcomes(30, 20, seed=1), test_runs=1, tokens=300)
    recs += informative_records("always-test", outcomes(30, 18, seed=2), seed=1, test_runs=3, tokens=500)
    recs += [record(f"HumanEval/{i}", "single", ok, test_runs=0, tokens=150, value=None)
             for i, ok in enumerate(outcomes(30, 15, seed=3))]
    return write_run(tmp_path / "run", recs, config=config())


def test_run_outputs_are_written_and_well_formed(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    summary = write_run_outputs(run_dir, n_boot=300)
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert list(summary["policies"]) == ["single", "always-test", "value"]  # canonical policy order
    assert {c["b"] for c in summary["paired"]} == {"single", "always-test"}

    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 90 and all(set(x) == {"task_id", "completion", "policy"} for x in lines)
    assert {x["policy"] for x in lines} == {"single", "always-test", "value"}

    report = (run_dir / "report.md").read_text()
    for needle in ("## Policies", "pass@1 % [95% CI]", "value vs always-test", "McNemar p", "AUROC",
                   "![cost/success frontier](frontier.png)", "value_traces.png", "calibration.png",
                   "fake/model"):
        assert needle in report, needle
    for name in ("frontier", "value_traces", "calibration"):
        data = (run_dir / f"{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name


def test_report_without_value_policy_or_readings(tmp_path: Path) -> None:
    recs = [record(f"HumanEval/{i}", "single", i % 2 == 0, value=None, test_runs=0) for i in range(6)]
    run_dir = write_run(tmp_path / "run", recs)
    summary = write_run_outputs(run_dir, n_boot=100)
    assert summary["paired"] == []
    assert (run_dir / "frontier.png").is_file() and not (run_dir / "value_traces.png").exists()
    report = (run_dir / "report.md").read_text()
    assert "No config.json" in report and "nothing to compare" in report


def test_report_notes_corrupt_lines_and_partial_policies(tmp_path: Path) -> None:
    recs = [record(f"HumanEval/{i}", "value", True) for i in range(4)]
    recs += [record("HumanEval/0", "single", False)]
    run_dir = write_run(tmp_path / "run", recs, torn_tail='{"task_id"')
    write_run_outputs(run_dir, n_boot=100)
    report = (run_dir / "report.md").read_text()
    assert "1 corrupt line" in report and "only 1 of 4 tasks" in report


def test_cli_eval_report(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    res = CliRunner().invoke(app, ["eval", "report", str(run_dir), "--json", "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    assert (run_dir / "report.md").is_file()
    assert '"schema": "valueagent-eval-summary/2"' in res.stdout


def test_rewriting_a_report_keeps_what_only_the_run_knew(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    first = write_run_outputs(run_dir, n_boot=100, extra={"runner_errors": {"HumanEval/3": "boom"},
                                                          "selected_tasks": 31})
    assert first["runner_errors"] == {"HumanEval/3": "boom"}
    res = CliRunner().invoke(app, ["eval", "report", str(run_dir), "--n-boot", "100"])
    assert res.exit_code == 0, res.output
    again = json.loads((run_dir / "summary.json").read_text())
    assert again["runner_errors"] == {"HumanEval/3": "boom"} and again["selected_tasks"] == 31
    assert "HumanEval/3" in (run_dir / "report.md").read_text()  # the report still lists the error
    fresh = write_run_outputs(run_dir, n_boot=100, extra={"runner_errors": {}})  # a new run's word wins
    assert fresh["runner_errors"] == {} and fresh["selected_tasks"] == 31
