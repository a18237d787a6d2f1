"""Regenerate every committed summary, replay, comparison and heads result from its committed records or bank,
with the command its README names, into a scratch folder, and say which differ from the committed file.

    python scripts/check_regenerate.py            # all of them (~5 min on one core; heads need encoded features)
    python scripts/check_regenerate.py replay     # only the entries whose name contains "replay"

A refactor of the statistics, the signals or the search rules must leave every line "same". Keys that only
say when or how fast a file was made (``replay_s``, ``created``) are not compared, and floats are equal within
1e-9 relative (the same sums in another order differ in their last bits). The heads entries need the
0.5B MBPP banks' features (`evals/heads/run.sh embedded` makes them; they are not committed) and are
reported as "skipped" without them. Exit status 1 when anything differs.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VA = [sys.executable, "-m", "valueagent.cli.main"]
VOLATILE = {"replay_s", "created", "elapsed_s", "seconds"}


def _strip(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _diffs(a: Any, b: Any, path: str = "") -> list[str]:
    """Every path where two JSON documents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in {'committed' if k in a else 'regenerated'}" for k in sorted(set(a) ^ set(b))]
        return out + [d for k in sorted(set(a) & set(b)) for d in _diffs(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} entries committed, {len(b)} regenerated"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diffs(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
        return []  # the last bits of a float: the same sums in another order
    return [] if a == b else [f"{path}: committed {a!r}, regenerated {b!r}"]


def _va(*args: str | Path) -> None:
    subprocess.run([*VA, *map(str, args)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def _summary(run: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        src = ROOT / run
        reference = json.loads((src / "summary.json").read_text())["reference"]
        dst = tmp / "run"
        shutil.copytree(src, dst)
        _va("eval", "report", dst, "--reference", reference)
        return dst / "summary.json"

    return make


def _replay(bank: str, *extra: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        _va("bank", "replay", bank, "--output", tmp / "replay.json", *extra)
        return tmp / "replay.json"

    return make


def _compare(tmp: Path) -> Path:
    _va("bank", "compare", "evals/bank/replay-0.5b/replay.json", "evals/bank/replay-1.5b/replay.json",
        "--labels", "0.5b,1.5b", "--output", tmp / "compare.json")
    return tmp / "compare.json"


HEADS = "evals/heads/qwen2.5-coder-0.5b"
MBPP_05 = "evals/bank/qwen2.5-coder-0.5b-int8-mbpp"


def _heads(tmp: Path) -> Path:
    _va("bank", "heads", f"{MBPP_05}/train", "--test", f"mbpp-test={MBPP_05}/test", "--test",
        "humaneval-eval=evals/bank/qwen2.5-coder-0.5b-int8:eval", "--output", tmp / "heads.json",
        "--export-axis", tmp / "head-axis.safetensors")
    return tmp / "heads.json"


def _features() -> bool:
    return all((ROOT / bank / "features").is_dir()
               for bank in (f"{MBPP_05}/train", f"{MBPP_05}/test", "evals/bank/qwen2.5-coder-0.5b-int8"))


CHECKS: dict[str, tuple[str, Callable[[Path], Path]]] = {
    **{f"summary {run}": (f"{run}/summary.json", _summary(run)) for run in sorted(
        str(p.parent.relative_to(ROOT)) for p in (ROOT / "evals").rglob("summary.json"))},
    "replay 0.5b": ("evals/bank/replay-0.5b/replay.json", _replay("evals/bank/qwen2.5-coder-0.5b-int8")),
    "replay 1.5b": ("evals/bank/replay-1.5b/replay.json", _replay("evals/bank/qwen2.5-coder-1.5b-int8")),
    "compare 0.5b 1.5b": ("evals/bank/compare-0.5b-1.5b/compare.json", _compare),
    "heads 0.5b mbpp": (f"{HEADS}/heads.json", _heads),
    "replay 0.5b mbpp heads": (f"{HEADS}/replay.json", _replay(
        f"{MBPP_05}/test", "--calibration-bank", f"{MBPP_05}/train", "--scores", f"{HEADS}/heads-mbpp-test-scores.json",
        "--scores", f"{HEADS}/heads-fit-oof-scores.json")),
}


def main(argv: list[str]) -> int:
    wanted = [name for name in CHECKS if not argv or any(a in name for a in argv)]
    bad = 0
    for name in wanted:
        committed, make = CHECKS[name]
        if name.startswith("heads") and not _features():
            print(f"skipped    {name}: no features (evals/heads/run.sh embedded encodes them)", flush=True)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = make(Path(tmp))
            made = json.loads(out.read_text().replace(str(out.parent), str(Path(committed).parent)))  # written paths
            d = _diffs(_strip(json.loads((ROOT / committed).read_text())), _strip(made))
        more = f" (+{len(d) - 4} more)" if len(d) > 4 else ""
        print(f"{'DIFFERENT' if d else 'same':10} {name}{': ' + '; '.join(d[:4]) + more if d else ''}", flush=True)
        bad += bool(d)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
