"""Count HumanEval's visible tests and check that the canonical solutions pass them.

    python scripts/check_humaneval_visible_tests.py [--json] [--runner auto|sandbox|subprocess]

Task code never runs in this process: each task's canonical solution and its visible tests run in a
child process (valueagent.sandbox when it is available, else `/usr/bin/python3 -I` with a timeout as a
stand-in). A case passes when the value of `call` equals `expected` with the same type at every level
of nesting (stricter than `==`: 2 == 2.0 does not pass). Failures that are not in
`valueagent.tasks.HUMANEVAL_EXCLUSIONS` are prompt typos to add there; exit status 1 when any remain.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from valueagent.tasks import HUMANEVAL_EXCLUSIONS, Task, VisibleTest, load_humaneval, parse_visible_tests

PYTHON = "/usr/bin/python3"

_HARNESS = r'''
import json as __json

def __same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(__same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(__same(a[k], b[k]) for k in a)
    return a == b

__results = []
for __call, __expected in __json.loads(__CASES):
    try:
        __got = eval(__call)
        __results.append([__same(__got, eval(__expected)), repr(__got)[:200], None])
    except BaseException as __exc:
        __results.append([False, None, f"{type(__exc).__name__}: {__exc}"[:200]])
print(__NONCE + __json.dumps(__results))
'''


def _run_subprocess(task: Task, cases: tuple[VisibleTest, ...], timeout: float = 10.0) -> list[dict]:
    nonce = secrets.token_hex(8)
    payload = json.dumps([[c.call, c.expected] for c in cases])
    program = (f"{task.prompt}{task.canonical_solution}\n\n__CASES = {payload!r}\n__NONCE = {nonce!r}\n"
               f"{_HARNESS}")
    try:
        proc = subprocess.run([PYTHON, "-I", "-"], input=program, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"passed": False, "got": None, "error": "timeout"} for _ in cases]
    line = next((x for x in proc.stdout.splitlines() if x.startswith(nonce)), None)
    if line is None:
        error = f"no verdict (rc={proc.returncode}): {proc.stderr[-300:]}"
        return [{"passed": False, "got": None, "error": error} for _ in cases]
    return [{"passed": p, "got": g, "error": e} for p, g, e in json.loads(line[len(nonce):])]


def _run_sandbox(task: Task, cases: tuple[VisibleTest, ...]) -> list[dict]:
    from valueagent.sandbox import Sandbox  # built concurrently; used when present

    results = Sandbox().run_cases(task.prompt + (task.canonical_solution or ""), list(cases))
    return [{"passed": bool(r.passed), "got": getattr(r, "got", None), "error": getattr(r, "error", None)}
            for r in results]


def main() -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--runner", choices=["auto", "sandbox", "subprocess"], default="auto")
    args = parser.parse_args()
    runner = args.runner
    if runner == "auto":
        try:
            from valueagent.sandbox import Sandbox  # noqa: F401
            runner = "sandbox"
        except ImportError:
            runner = "subprocess"
    run = _run_sandbox if runner == "sandbox" else _run_subprocess

    tasks = load_humaneval()
    parsed = {t.task_id: parse_visible_tests(t.prompt, t.entry_point) for t in tasks}
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = dict(zip(parsed, pool.map(lambda t: run(t, parsed[t.task_id]), tasks), strict=True))

    failures, excluded_ok = [], []
    for task in tasks:
        for case, verdict in zip(parsed[task.task_id], verdicts[task.task_id], strict=True):
            key = (task.task_id, case.call)
            if not verdict["passed"]:
                entry = {"task_id": task.task_id, "call": case.call, "expected": case.expected, **verdict}
                entry["excluded"] = key in HUMANEVAL_EXCLUSIONS
                failures.append(entry)
            elif key in HUMANEVAL_EXCLUSIONS:
                excluded_ok.append({"task_id": task.task_id, "call": case.call})
    public = [t.public() for t in tasks]
    report = {
        "runner": runner,
        "tasks": len(tasks),
        "tasks_with_parsed_tests": sum(bool(v) for v in parsed.values()),
        "parsed_cases": sum(len(v) for v in parsed.values()),
        "tasks_with_visible_tests": sum(bool(p.visible_tests) for p in public),
        "visible_cases": sum(len(p.visible_tests) for p in public),
        "canonical_passes_all_visible": sum(
            all(v["passed"] for v, c in zip(verdicts[p.task_id], parsed[p.task_id], strict=True)
                if (p.task_id, c.call) not in HUMANEVAL_EXCLUSIONS)
            for p in public if p.visible_tests
        ),
        "failures": failures,
        "stale_exclusions": excluded_ok,
    }
    unexplained = [f for f in failures if not f["excluded"]]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            if not isinstance(value, list):
                print(f"{key}: {value}")
        for f in failures:
            mark = "excluded" if f["excluded"] else "NEW"
            print(f"[{mark}] {f['task_id']}: {f['call']} -> expected {f['expected']}, "
                  f"got {f['got']} {f['error'] or ''}")
        for e in excluded_ok:
            print(f"[stale exclusion: now passes] {e['task_id']}: {e['call']}")
    return 1 if unexplained or excluded_ok else 0


if __name__ == "__main__":
    sys.exit(main())
