"""Does a replay from a bank agree with a live run of the same policies on the same seeds?

Usage: python scripts/check_bank_replay.py LIVE_RUN_DIR BANK_DIR [--out FILE]
           [--scores HEADS_SCORES.json --as LIVE_POLICY=REPLAY_POLICY ...]

For every (task, policy) record of the live run (``valueagent run ... --policy value-rank ...`` on tasks the
bank holds), compares its hidden verdict, generated tokens and visible-test runs with the replay of the same
policy on the bank. Prints and writes the per-task comparison; exits 1 on any disagreement.

A value head exported as an axis (``--axis head``) makes the live ``value-rank`` rank by the head: pass the
head's scores of this bank (``bank heads`` wrote them) and ``--as value-rank=probe-mean@20-rank`` to compare
it with the head's own replay; the per-sample readings are then compared too (the live mean reading against the
head's score of the same sample, over the samples the live run drew exactly as the bank did: equal up to the
decode's int8 arithmetic against the encode's bfloat16).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from valueagent.bank.replay import ReplayConfig, replay
from valueagent.bank.store import load_bank
from valueagent.cli.bank_cmd import read_scores
from valueagent.runner import read_results


def _readings(records: list[dict[str, Any]], scored: dict[str, dict[str, list[float]]], as_: dict[str, str],
              bank: Any) -> dict[str, Any] | None:
    """Live candidate scores against the head's scores of the same samples (task, attempt j = sample j): over
    the samples whose code is the bank's (the same draw), and how many parted from it (a near-tie token)."""
    samples = {t["task_id"]: t["samples"] for t in bank}
    live, head, parted, same_top, tasks = [], [], 0, 0, 0
    for r in records:
        name = as_.get(r["policy"], "").removesuffix("-rank")
        per = scored.get(r["task_id"], {}).get(name)
        cands = {int(c["attempt"]): c for c in r.get("candidates") or [] if c.get("score") is not None}
        if per is None or not cands:
            continue
        js = sorted(cands)
        a, b = [cands[j]["score"] for j in js], [per[j] for j in js]
        tasks += 1
        same_top += int(js[int(np.argmax(a))] == js[int(np.argmax(b))])
        for j, x, y in zip(js, a, b, strict=True):
            if cands[j]["code"] != samples[r["task_id"]][j]["code"]:
                parted += 1
                continue
            live.append(x)
            head.append(y)
    if not live:
        return None
    x, y = np.asarray(live), np.asarray(head)
    return {"tasks": tasks, "samples_same_code": len(x), "samples_parted": parted,
            "pearson_r": float(np.corrcoef(x, y)[0, 1]), "max_abs_diff": float(np.abs(x - y).max()),
            "median_abs_diff": float(np.median(np.abs(x - y))), "head_score_sd": float(y.std()),
            "same_top_sample": same_top}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("live", type=Path)
    p.add_argument("bank", type=Path)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--scores", type=Path, action="append", default=[],
                   help="a `bank heads` scores file of BANK (its heads replay as <head>-rank)")
    p.add_argument("--as", dest="as_", action="append", default=[], metavar="LIVE=REPLAY",
                   help="compare the live policy LIVE with the replay policy REPLAY "
                        "(e.g. value-rank=probe-mean@20-rank)")
    a = p.parse_args()
    records = read_results(a.live)
    if not records:
        print(f"{a.live} has no results", file=sys.stderr)
        return 2
    bad = [x for x in a.as_ if x.count("=") != 1]
    if bad:
        print(f"--as {bad[0]}: write LIVE=REPLAY, e.g. value-rank=probe-mean@20-rank", file=sys.stderr)
        return 2
    as_ = dict(x.split("=") for x in a.as_)
    bank = load_bank(a.bank)
    scored = read_scores(a.scores, bank)
    policies = tuple(sorted({as_.get(r["policy"], r["policy"]) for r in records}))
    result = replay(bank, ReplayConfig(policies=policies, scored=scored))
    rows, agree = [], 0
    for r in sorted(records, key=lambda r: (r["policy"], int(r["task_id"].split("/")[-1]))):
        name = as_.get(r["policy"], r["policy"])
        replayed = {tid: (ok, tok, tests) for tid, ok, tok, tests in result["per_task"][name]}
        live = (r["passed"], r["tokens"], r["test_runs"])
        same = replayed.get(r["task_id"]) == live
        agree += same
        rows.append({"task_id": r["task_id"], "policy": r["policy"], "replay_policy": name, "live": list(live),
                     "replay": list(replayed.get(r["task_id"], ())), "agree": same})
    report: dict[str, Any] = {"live": str(a.live), "bank": str(a.bank), "records": len(rows), "agree": agree,
                              "as": as_, "scores": [str(s) for s in a.scores]}
    if as_ and scored:
        report["readings"] = _readings(records, scored, as_, bank)
    report["rows"] = rows
    text = json.dumps(report, indent=1)
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    print(f"{agree}/{len(rows)} (task, policy) pairs agree (hidden verdict, tokens, test runs)")
    if report.get("readings"):
        print("readings:", json.dumps(report["readings"]))
    return 0 if agree == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
