"""The CI regression suite: a real eval on the embedded model, checked against the committed baseline.

``evals/baselines/ci_suite.sh`` runs 4 eval-split HumanEval tasks x {single, value} and calls
``valueagent eval regress`` against ``evals/baselines/embedded-ci.json``; this test fails when it finds a
regression (exit 1) or cannot run (exit 2). The regress logic itself is tested on constructed runs in
test_eval_compare.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_embedded_model_has_not_regressed(tmp_path: Path) -> None:
    env = {**os.environ, "VA": str(Path(sys.executable).parent / "valueagent")}
    proc = subprocess.run([str(ROOT / "evals/baselines/ci_suite.sh"), str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    checked = {c["name"] for c in report["checks"] if c["kind"] == "pass@1"}
    assert checked == {"single", "value"}
    assert all(c["n"] == 4 for c in report["checks"] if c["kind"] == "pass@1")
