"""Backend benchmark: hook overhead and batching gain as ratios from one run (not a timed test).

Usage: python benchmarks/bench_backend.py [--model embedded] [--tokens 64] [--repeats 3] [--out FILE]
Equivalent to `valueagent bench --json`; this script also saves the JSON next to the code that made it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from valueagent.cli.common import load_backend_or_fail
from valueagent.runtime.benchmark import run_bench


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="embedded")
    p.add_argument("--axis", default="default")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/backend.json"))
    a = p.parse_args()
    backend = load_backend_or_fail(a.model, a.axis, None, None, random_axis_ok=True)
    report = run_bench(backend, tokens=a.tokens, repeats=a.repeats, progress=lambda m: print(m, file=sys.stderr))
    backend.close()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
