"""Does a replay from a bank agree with a live run of the same policies on the same seeds?

Usage: python scripts/check_bank_replay.py LIVE_RUN_DIR BANK_DIR [--out FILE]

For every (task, policy) record of the live run (``valueagent run ... --policy value-rank ...`` on tasks the
bank holds), compares its hidden verdict, generated tokens and visible-test runs with the replay of the same
policy on the bank. Prints and writes the per-task comparison; exits 1 on any disagreement.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from valueagent.bank.replay import ReplayConfig, replay
from valueagent.bank.store import load_bank
from valueagent.runner import read_results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("live", type=Path)
    p.add_argument("bank", type=Path)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    records = read_results(a.live)
    if not records:
        print(f"{a.live} has no results", file=sys.stderr)
        return 2
    policies = tuple(sorted({r["policy"] for r in records}))
    result = replay(load_bank(a.bank), ReplayConfig(policies=policies))
    rows, agree = [], 0
    for r in sorted(records, key=lambda r: (r["policy"], int(r["task_id"].split("/")[-1]))):
        replayed = {tid: (ok, tok, tests) for tid, ok, tok, tests in result["per_task"][r["policy"]]}
        live = (r["passed"], r["tokens"], r["test_runs"])
        same = replayed.get(r["task_id"]) == live
        agree += same
        rows.append({"task_id": r["task_id"], "policy": r["policy"], "live": list(live),
                     "replay": list(replayed.get(r["task_id"], ())), "agree": same})
    report = {"live": str(a.live), "bank": str(a.bank), "records": len(rows), "agree": agree, "rows": rows}
    text = json.dumps(report, indent=1)
    if a.out is not None:
        a.out.write_text(text + "\n")
    print(f"{agree}/{len(rows)} (task, policy) pairs agree (hidden verdict, tokens, test runs)")
    return 0 if agree == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
