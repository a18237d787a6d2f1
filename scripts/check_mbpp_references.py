"""Run every MBPP reference solution against its hidden and visible tests in the sandbox; list the failures.

    python scripts/check_mbpp_references.py [--write] [--workers 4]

Each problem's ``code`` is scored exactly as a model's answer is (``Sandbox.score_humaneval`` for the
hidden asserts, ``Sandbox.run_cases`` for the visible one, type-strict). A problem whose reference fails
the hidden tests cannot be scored fairly and is excluded; ``--write`` records each one with its reason in
``valueagent/data/mbpp/exclusions.json``. A reference that passes the hidden asserts but not the
type-strict visible case is reported (the visible case is then stricter than the hidden `==`) and kept.
Exit status 1 when the file on disk differs from what this run finds.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from valueagent.agent.prompts import completion_for, program_for
from valueagent.mbpp import load_mbpp
from valueagent.sandbox import Sandbox
from valueagent.tasks import Task

OUT = Path(__file__).resolve().parents[1] / "valueagent" / "data" / "mbpp" / "exclusions.json"


def check(task: Task, sandbox: Sandbox) -> tuple[str, str | None, str | None]:
    code = task.canonical_solution or ""
    verdict = sandbox.score_humaneval(task.prompt, completion_for(code, task.entry_point), task.test,
                                      task.entry_point)
    hidden = None if verdict.status == "passed" else f"{verdict.status}: {verdict.detail}"[:300]
    cases = sandbox.run_cases(program_for(task.prompt, code, task.entry_point), task.public().visible_tests)
    visible = next((c.error or "failed" for c in cases if not c.passed), None)
    return task.task_id, hidden, visible


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="write valueagent/data/mbpp/exclusions.json")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    tasks = load_mbpp(include_excluded=True)
    with Sandbox(workers=args.workers) as sandbox, ThreadPoolExecutor(args.workers) as pool:
        rows = list(pool.map(lambda t: check(t, sandbox), tasks))
        level = sandbox.level.label
    excluded = {tid: f"the reference solution fails its own tests here ({why})" for tid, why, _ in rows if why}
    strict = {tid: why for tid, hidden, why in rows if why and not hidden}
    doc = {"recipe": "python scripts/check_mbpp_references.py --write", "sandbox": level,
           "checked": len(rows), "excluded": excluded, "visible_stricter_than_hidden": strict}
    print(f"{len(rows)} references: {len(rows) - len(excluded)} pass their hidden tests, {len(excluded)} excluded; "
          f"{len(strict)} pass the hidden asserts but not the type-strict visible case", file=sys.stderr)
    for tid, why in excluded.items():
        print(f"  excluded {tid}: {why}", file=sys.stderr)
    for tid, why in strict.items():
        print(f"  visible stricter {tid}: {why}", file=sys.stderr)
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    if args.write:
        OUT.write_text(text)
        return 0
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    return 0 if old.get("excluded") == excluded else 1


if __name__ == "__main__":
    raise SystemExit(main())
