"""Synthetic run directories for the eval tests: result records in the runner's format, written by hand."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def record(
    task_id: str,
    policy: str,
    passed: bool,
    *,
    value: float | None = 0.0,
    logprob: float = -0.3,
    test_runs: int = 1,
    tokens: int = 100,
    backtracks: int = 0,
    revisions: int = 0,
    wall_s: float = 1.0,
    segments: int = 3,
) -> dict[str, Any]:
    """One results.jsonl line: a value trace of ``segments`` segment readings then a final reading."""
    trace: list[dict[str, Any]] = []
    for i in range(segments):
        v = None if value is None else value + 0.01 * i
        trace.append({"step": i, "kind": "segment", "attempt": 0, "position": 32 * (i + 1), "n_tokens": 32,
                      "value": v, "value_norm": v, "logprob": logprob, "score": v, "drop": None, "draw": None,
                      "decision": "continue", "reason": ""})
    trace.append({"step": segments, "kind": "final", "attempt": 0, "position": 32 * segments, "n_tokens": 96,
                  "value": value, "value_norm": value, "logprob": logprob, "score": value, "drop": None,
                  "draw": None, "decision": "accept" if test_runs == 0 else "run_tests", "reason": ""})
    return {
        "task_id": task_id, "policy": policy, "passed": passed, "hidden_status": "passed" if passed else "failed",
        "test_runs": test_runs, "backtracks": backtracks, "revisions": revisions, "tokens": tokens,
        "wall_s": wall_s, "completion": f"    return {task_id!r}\n", "value_trace": trace,
        "transcript": [{"role": "user", "content": "prompt", "kind": "prompt", "attempt": 0}], "error": None,
    }


def outcomes(n: int, k: int, seed: int = 0) -> list[bool]:
    """``n`` outcomes with exactly ``k`` passes in a seeded random order."""
    out = [True] * k + [False] * (n - k)
    random.Random(seed).shuffle(out)
    return out


def informative_records(policy: str, passed: Sequence[bool], *, seed: int = 0, **kw: Any) -> list[dict[str, Any]]:
    """Records whose final value reading is higher for passing tasks (with noise), so AUROC is high."""
    rng = random.Random(seed)
    return [record(f"HumanEval/{i}", policy, ok, value=(1.0 if ok else -1.0) + rng.gauss(0, 0.5),
                   logprob=-0.2 + rng.gauss(0, 0.3), **kw)
            for i, ok in enumerate(passed)]


def write_run(
    run_dir: Path, records: Sequence[Mapping[str, Any]], *, config: Mapping[str, Any] | None = None,
    torn_tail: str | None = None,
) -> Path:
    """Write ``results.jsonl`` (and ``config.json``); ``torn_tail`` appends an incomplete last line."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "results.jsonl").open("w") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
        if torn_tail is not None:
            fh.write(torn_tail)
    if config is not None:
        (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


def config(*, validation: Mapping[str, Any] | None = None, sha: str = "abc123", seed: int = 0) -> dict[str, Any]:
    """A minimal config.json as written by ``eval humaneval``."""
    return {
        "schema": "valueagent-eval-config/1", "created": "2026-01-01T00:00:00+00:00", "command": ["valueagent"],
        "model": {"model_id": "fake/model", "revision": None, "dtype": "float32", "device": "cpu"},
        "axis": {"name": "fake", "sha256": sha, "layer": 1, "validation": dict(validation or {})},
        "dataset": {"split": "eval", "n_tasks": 1, "hash": "sha256:0", "task_ids": []},
        "seeds": {"seed": seed}, "git": {"commit": "0" * 40, "dirty": False},
    }
