"""The committed figures regenerate from their committed records and banks with today's code (issue 24:
"behaviour does not change"): every summary, both HumanEval replays and their comparison."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_committed_summaries_replays_and_comparison_regenerate() -> None:
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_regenerate.py"), "summary", "replay 0.5b",
                          "replay 1.5b", "compare"], capture_output=True, text=True, timeout=1800)
    lines = [x for x in res.stdout.splitlines() if x.split(" ", 1)[0] in ("same", "DIFFERENT", "skipped")]
    assert res.returncode == 0 and lines and all(x.startswith(("same", "skipped")) for x in lines), \
        res.stdout[-3000:] + res.stderr[-3000:]
    assert sum(x.startswith("same  ") for x in lines) >= 12  # 8 summaries, 3 replays, 1 comparison
