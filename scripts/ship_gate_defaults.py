"""Make the gate calibrations that ship as each embedded model's default (issue 24, item 9).

    python scripts/ship_gate_defaults.py [--check]

- 0.5B: the default is repeat-free (`skip_repeat_backtracks`: a backtrack that would provably redraw the
  dropped text is refused), i.e. the `skip-repeats` variant; the calibration the committed 0.5B float32 runs
  used (repeats allowed) stays shipped as the variant `with-repeats` and is what their config.json names
  (`evals/calibration/embedded-gate.json` links to it).
- Both models: the search policies' thresholds and fitted signals (`value-seq`, `probe-rank`, `value-stop`,
  ...) from `bank replay --gate-config-out` on that model's HumanEval bank (`evals/bank/replay-*/search-gate.json`)
  are merged in, so `valueagent run TASKS --policy value-seq` runs on the default model without a flag.
Nothing is refitted: each part is copied from its committed source; `task_ids` is the union (the runs that
may use the file must avoid all of them). `--check` exits 1 when a shipped file differs from what this makes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AXES = ROOT / "valueagent" / "data" / "axes"
PLAN = {
    "qwen--qwen2.5-coder-0.5b-instruct.gate.json": ("qwen--qwen2.5-coder-0.5b-instruct.gate-skip-repeats.json",
                                                     "evals/bank/replay-0.5b/search-gate.json"),
    "qwen--qwen2.5-coder-1.5b-instruct.gate.json": ("evals/calibration/embedded-1.5b/gate.json",
                                                     "evals/bank/replay-1.5b/search-gate.json"),
}


def make(gate_path: Path, search_path: Path) -> dict:
    gate, search = json.loads(gate_path.read_text()), json.loads(search_path.read_text())
    if gate["reading"]["axis_sha256"] != search["reading"]["axis_sha256"]:
        raise SystemExit(f"{search_path} was made on another axis than {gate_path}")
    clash = set(gate["policies"]) & set(search["policies"])
    if clash:
        raise SystemExit(f"{sorted(clash)} are in both {gate_path} and {search_path}")
    out = dict(gate)
    out["policies"] = {**gate["policies"], **search["policies"]}
    out["task_ids"] = sorted(set(gate["task_ids"]) | set(search["task_ids"]))
    out["search_source"] = {"file": str(search_path.relative_to(ROOT)), "created": search["created"],
                            "source": search["source"], "risk": search["risk"], "task_ids": len(search["task_ids"])}
    out["shipped_by"] = "python scripts/ship_gate_defaults.py"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    bad = 0
    for target, (gate, search) in PLAN.items():
        gate_path = AXES / gate if "/" not in gate else ROOT / gate
        text = json.dumps(make(gate_path, ROOT / search), indent=2) + "\n"
        path = AXES / target
        if args.check:
            if not path.is_file() or path.read_text() != text:
                print(f"{path} differs from what scripts/ship_gate_defaults.py makes", file=sys.stderr)
                bad = 1
        else:
            path.write_text(text)
    return bad


if __name__ == "__main__":
    raise SystemExit(main())
