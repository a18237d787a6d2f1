"""Merging shard runs into one run directory.

A comparison too long for one process is run as shards: the same command with disjoint ``--task-ids`` (one
process per core, or per machine), each in its own directory and each resumable on its own. ``merge_runs``
checks that the shards are one experiment (same model, precision, axis, seed and gate calibration; no
(task, policy) pair twice), writes their records into one directory and the usual summary and report, as if
one process had run them. The shards are read, never changed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from valueagent.benchmarks import benchmark_of
from valueagent.eval.config import RESUME_KEYS, read_config, write_config
from valueagent.eval.records import RESULTS_FILE
from valueagent.tasks import dataset_hash

__all__ = ["MergeError", "merge_runs"]


class MergeError(ValueError):
    """The shards cannot be one run (another experiment, a pair twice, a missing file, an occupied output)."""


def _gate(config: dict[str, Any]) -> str:
    """The calibration a run's gated policies used (its thresholds, not the file's timestamp)."""
    gate = config.get("gate_config") or {}
    return json.dumps({k: gate.get(k) for k in ("policies", "segment_tokens", "risk")}, sort_keys=True)


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    diffs = [f"{section}.{key}" for section, key in RESUME_KEYS
             if (a.get(section) or {}).get(key) != (b.get(section) or {}).get(key)]
    return diffs + (["gate calibration"] if _gate(a) != _gate(b) else [])


def _check_output(out: Path, shards: Sequence[Path], overwrite: bool) -> None:
    if any(out.resolve() == s.resolve() or out.resolve().is_relative_to(s.resolve()) for s in shards):
        raise MergeError(f"--output-dir {out} is one of the shards or inside one: merge into a new directory")
    if out.exists() and not out.is_dir():
        raise MergeError(f"--output-dir {out} is a file: choose a directory")
    if (out / RESULTS_FILE).exists() and not overwrite:
        raise MergeError(f"--output-dir {out} already holds a run: pass --overwrite to rewrite it from the shards, "
                         "or choose another directory")


def _read_shard(path: Path) -> tuple[dict[str, Any], list[tuple[tuple[str, str], bytes]]]:
    """A shard's config and its complete records as ``((task_id, policy), line)``, the line kept as written."""
    config = read_config(path) if path.is_dir() else None
    if config is None:
        raise MergeError(f"{path} is not a run directory (no config.json): give directories written by "
                         "`valueagent eval humaneval`")
    results = path / RESULTS_FILE
    if not results.is_file():
        raise MergeError(f"{path} has no {RESULTS_FILE}: run it first (or drop it from the merge)")
    lines = [raw for raw in results.read_bytes().split(b"\n") if raw.strip()]
    complete = []
    for i, raw in enumerate(lines):
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # a torn last line (a shard still running or killed): its pair is simply not done
            raise MergeError(f"{results}:{i + 1} is corrupt in the middle of the file; fix or delete that line "
                             "(its shard reruns it with --resume)") from None
        if not isinstance(rec, dict) or "task_id" not in rec or "policy" not in rec:
            raise MergeError(f"{results}:{i + 1} is not a runner record (no task_id/policy)")
        complete.append(((rec["task_id"], rec["policy"]), raw))
    return config, complete


def merge_runs(shards: Sequence[Path], out: Path, *, overwrite: bool = False, reference: str = "value",
               n_boot: int = 10_000) -> dict[str, Any]:
    """Write the shards' records into ``out`` with a config recording where they came from, then the summary,
    samples and report. Returns the summary."""
    from valueagent.eval.report import write_run_outputs

    if len(shards) < 1:
        raise MergeError("merge needs at least one shard directory")
    _check_output(out, shards, overwrite)
    read = [(s, *_read_shard(s)) for s in shards]
    first_dir, first, _ = read[0]
    seen: dict[tuple[str, str], Path] = {}
    records: list[bytes] = []
    for path, config, lines in read:
        if diffs := _differences(first, config):
            raise MergeError(f"{path} is another experiment than {first_dir} ({', '.join(diffs)} differ): merge only "
                             "shards of one command run with disjoint --task-ids")
        for pair, raw in lines:
            if pair in seen:
                raise MergeError(f"{pair[0]} / {pair[1]} is in both {seen[pair]} and {path}: give the shards "
                                 "disjoint --task-ids")
            seen[pair] = path
            records.append(raw)
    bench = benchmark_of(t for t, _ in seen)
    known = bench.tasks("all") if bench is not None else ()
    order = {t.task_id: i for i, t in enumerate(known)}
    task_ids = sorted({t for t, _ in seen}, key=lambda t: (order.get(t, len(order)), t))
    config = json.loads(json.dumps(first))
    config["merged_from"] = [{"dir": str(path), "created": c.get("created"), "command": c.get("command"),
                              "resumed": c.get("resumed", []), "records": len(lines),
                              "task_ids": c.get("dataset", {}).get("task_ids")} for path, c, lines in read]
    policies = sorted({p for _, p in seen}, key=lambda p: [*first["settings"]["policies"], p].index(p))
    config["settings"] = {**first["settings"], "policies": policies, "task_ids": task_ids}
    if bench is not None and all(t in order for t in task_ids):  # a benchmark's own tasks: the hash it checks
        tasks = tuple(t for t in known if t.task_id in set(task_ids))
        split = next((name for name in bench.splits if {t.task_id for t in bench.tasks(name)} == set(task_ids)),
                     None)
        config["dataset"] = {**first.get("dataset", {}), "n_tasks": len(tasks), "hash": dataset_hash(tasks),
                             "task_ids": task_ids, **({"split": split} if split else {})}
    errors: dict[str, str] = {}
    for path, _, _ in read:
        old = path / "summary.json"
        if old.is_file():
            errors.update(json.loads(old.read_text()).get("runner_errors") or {})
    errors = {k: v for k, v in errors.items() if tuple(k.split("|", 1)) not in seen}  # since redone
    write_config(out, config)
    tmp = out / (RESULTS_FILE + ".tmp")
    tmp.write_bytes(b"".join(raw + b"\n" for raw in records))
    tmp.replace(out / RESULTS_FILE)
    return write_run_outputs(out, reference=reference, n_boot=n_boot,
                             extra={"merged_shards": len(read), "selected_tasks": len(task_ids),
                                    "runner_errors": errors})
