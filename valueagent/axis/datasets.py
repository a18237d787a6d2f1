"""The frozen value-axis data read from the folders the caller names, and seeded stratified subsets.

The frozen data ships as package data (``valueagent/data/episodes``, ``distinctions`` and
``synthetic_code``; the repository's ``tasks/`` folders link to them, beside their recipes' READMEs), so an
installed package builds and evaluates axes from any folder. Callers may name other folders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from valueagent.tasks import Task, load_jsonl

T = TypeVar("T")
Record = dict[str, Any]


def shipped_data() -> tuple[Path, Path, Path]:
    """The package's frozen data: (episodes dir, distinctions dir, synthetic training tasks file)."""
    from importlib.resources import files

    root = Path(str(files("valueagent"))) / "data"
    return root / "episodes", root / "distinctions", root / "synthetic_code" / "tasks.jsonl"


def _jsonl(path: Path) -> list[Record]:
    if not path.exists():
        raise FileNotFoundError(f"missing {path}; regenerate it with the recipe in {path.parent}/README.md (the "
                                f"package ships the frozen data in {shipped_data()[0].parent})")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class AxisData:
    """All records, as frozen; ``data_hash`` identifies them (manifests' hashes + the task file)."""

    episodes: list[Record]
    contrasts: list[Record]
    code_pairs: list[Record]
    confidence: list[Record]
    backtracking: list[Record]
    tasks: tuple[Task, ...]
    data_hash: str


def load_data(episodes_dir: str | Path, distinctions_dir: str | Path, tasks_path: str | Path) -> AxisData:
    """Read the frozen episode, contrast, distinction and training-task files."""
    ep, di, tp = Path(episodes_dir), Path(distinctions_dir), Path(tasks_path)
    h = hashlib.sha256()
    for manifest in (ep / "manifest.json", di / "manifest.json"):
        if manifest.exists():
            h.update(json.loads(manifest.read_text()).get("data_sha256", "").encode())
    if not tp.exists():
        raise FileNotFoundError(f"missing training tasks {tp}; the package ships them in {shipped_data()[2]}")
    h.update(hashlib.sha256(tp.read_bytes()).hexdigest().encode())
    tasks = load_jsonl(tp)
    if any(t.task_id.startswith("HumanEval/") for t in tasks):
        raise ValueError(f"{tp} holds HumanEval tasks: HumanEval is the eval set and must not train an axis")
    return AxisData(
        episodes=_jsonl(ep / "episodes.jsonl"),
        contrasts=_jsonl(ep / "contrasts.jsonl"),
        code_pairs=_jsonl(di / "code_pairs.jsonl"),
        confidence=_jsonl(di / "confidence.jsonl"),
        backtracking=_jsonl(di / "backtracking.jsonl"),
        tasks=tasks,
        data_hash=h.hexdigest(),
    )


def stratified(items: Sequence[T], n: int | None, stratum: Callable[[T], str], *, seed: int = 0,
               key: Callable[[T], str] = str) -> list[T]:
    """Up to ``n`` items, taken round-robin over strata in a seeded order (all when ``n`` is None)."""
    def rank(x: T) -> str:
        return hashlib.sha256(f"{seed}:{key(x)}".encode()).hexdigest()

    groups: dict[str, list[T]] = {}
    for x in sorted(items, key=rank):
        groups.setdefault(stratum(x), []).append(x)
    order = sorted(groups, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    out: list[T] = []
    depth = 0
    while (n is None or len(out) < n) and any(depth < len(groups[s]) for s in order):
        for s in order:
            if depth < len(groups[s]) and (n is None or len(out) < n):
                out.append(groups[s][depth])
        depth += 1
    return out


def contrast_groups(
    contrasts: Sequence[Record], split: str, n: int | None, *, seed: int = 0
) -> list[tuple[Record, Record]]:
    """(success, failure) pairs of ``n`` groups of ``split``, stratified by strategy."""
    by: dict[str, dict[str, Record]] = {}
    for c in contrasts:
        if c["split"] == split:
            by.setdefault(c["group_id"], {})[c["variant"]] = c
    full = [g for g in by.values() if "success" in g and "failure" in g]
    chosen = stratified(full, n, lambda g: g["success"]["strategy"], seed=seed, key=lambda g: g["success"]["id"])
    return [(g["success"], g["failure"]) for g in chosen]


def backtracking_groups(traces: Sequence[Record], n: int | None, *, seed: int = 0) -> list[tuple[Record, Record]]:
    """(clean, backtrack) trace pairs of ``n`` groups, stratified by domain."""
    by: dict[str, dict[str, Record]] = {}
    for t in traces:
        by.setdefault(t["group_id"], {})[t["variant"]] = t
    full = [g for g in by.values() if "clean" in g and "backtrack" in g]
    chosen = stratified(full, n, lambda g: g["clean"]["domain"], seed=seed, key=lambda g: g["clean"]["id"])
    return [(g["clean"], g["backtrack"]) for g in chosen]


def confidence_pairs(items: Sequence[Record], n: int | None, *, seed: int = 0) -> list[tuple[Record, Record]]:
    """(high, low) confidence pairs, stratified by topic kind (code / math)."""
    by: dict[str, dict[int, Record]] = {}
    for it in items:
        by.setdefault(it["pair_id"], {})[int(it["label"])] = it
    full = [p for p in by.values() if 0 in p and 1 in p]
    chosen = stratified(full, n, lambda p: p[1]["topic"].split(":")[0], seed=seed, key=lambda p: p[1]["id"])
    return [(p[1], p[0]) for p in chosen]
