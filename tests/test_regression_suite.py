"""The CI regression suite: a real eval on the embedded model, checked against the committed baseline.

``evals/baselines/ci_suite.sh`` runs 4 eval-split HumanEval tasks x {single, value} and calls
``valueagent eval regress`` against ``evals/baselines/embedded-ci.json``. The slow test runs it for real
and fails when it finds a regression (exit 1) or cannot run (exit 2). The fast tests run the same script
with the eval replaced by a constructed result, so they check the suite's own rule and size: a result two
tasks worse than the baseline fails it, one task worse (the noise it tolerates) passes. The regress logic
itself is tested on constructed runs in test_eval_compare.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.eval_helpers import config, record, write_run

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "evals/baselines/ci_suite.sh"
BASELINE = ROOT / "evals/baselines/embedded-ci.json"
VALUEAGENT = Path(sys.executable).parent / "valueagent"

# Stands in for `valueagent` in the suite: `eval humaneval` records its arguments and leaves the run the
# test wrote; every other command is the real CLI.
SHIM = """
import json, os, sys
args = sys.argv[1:]
if args[:2] == ["eval", "humaneval"]:
    with open(os.environ["SUITE_ARGS"], "w") as fh:
        json.dump(args, fh)
else:
    os.execv(os.environ["REAL_VALUEAGENT"], ["valueagent", *args])
"""


def _baseline() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(BASELINE.read_text())
    return data


def _worse(outcomes: dict[str, bool], lost: int) -> dict[str, bool]:
    """``outcomes`` with its first ``lost`` passing tasks failed."""
    passing = [task for task, ok in outcomes.items() if ok][:lost]
    assert len(passing) == lost, f"the baseline has fewer than {lost} passes to lose"
    return {task: ok and task not in passing for task, ok in outcomes.items()}


def _run_suite(
    tmp_path: Path, outcomes: dict[str, dict[str, bool]]
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    baseline = _baseline()
    run = tmp_path / "run"
    records = [record(task, policy, ok) for policy, by_task in outcomes.items() for task, ok in by_task.items()]
    write_run(run, records, config={**config(), "model": baseline["model"], "axis": baseline["axis"]})
    shim = tmp_path / "valueagent"
    shim.write_text(f"#!{sys.executable}\n{SHIM}")
    shim.chmod(0o755)
    env = {**os.environ, "VA": str(shim), "REAL_VALUEAGENT": str(VALUEAGENT), "SUITE_ARGS": str(tmp_path / "args")}
    proc = subprocess.run([str(SUITE), str(run)], env=env, capture_output=True, text=True, timeout=300)
    return proc, json.loads((tmp_path / "args").read_text())


def test_the_baseline_is_the_suite_run_from_a_clean_tree(tmp_path: Path) -> None:
    baseline = _baseline()
    same = {name: dict(spec["outcomes"]) for name, spec in baseline["policies"].items()}
    proc, args = _run_suite(tmp_path, same)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    def without_output(argv: list[str]) -> list[str]:
        drop = {i for i, a in enumerate(argv) if a == "--output-dir"}
        return [a for i, a in enumerate(argv) if i not in drop and i - 1 not in drop and a != "--resume"]

    assert without_output(args) == without_output(baseline["command"][1:])  # the baseline is this suite's run
    assert baseline["git"]["dirty"] is False and len(baseline["git"]["commit"]) == 40
    # Every policy has two passes to lose: the suite can show the regression it is meant to catch.
    assert all(spec["passed"] >= 2 for spec in baseline["policies"].values())


@pytest.mark.parametrize("policy", sorted(_baseline()["policies"]))
@pytest.mark.parametrize(("lost", "fails"), [(2, True), (1, False)])
def test_two_tasks_worse_fails_the_suite_one_passes(tmp_path: Path, policy: str, lost: int, fails: bool) -> None:
    outcomes = {name: dict(spec["outcomes"]) for name, spec in _baseline()["policies"].items()}
    outcomes[policy] = _worse(outcomes[policy], lost)
    proc, _ = _run_suite(tmp_path, outcomes)
    assert proc.returncode == (1 if fails else 0), proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout[proc.stdout.index("{"):])["checks"]}
    assert checks[policy]["regressed"] is fails
    assert not any(c["regressed"] for name, c in checks.items() if name != policy)


@pytest.mark.slow
def test_embedded_model_has_not_regressed(tmp_path: Path) -> None:
    env = {**os.environ, "VA": str(VALUEAGENT)}
    proc = subprocess.run([str(SUITE), str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    checked = {c["name"] for c in report["checks"] if c["kind"] == "pass@1"}
    assert checked == {"single", "value"}
    assert all(c["n"] == 4 for c in report["checks"] if c["kind"] == "pass@1")
