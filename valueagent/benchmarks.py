"""The benchmarks every command takes by name (``humaneval``, ``mbpp``): their splits, in one place.

A benchmark is a name, its split names, the split an eval runs on by default, the split(s) that fitted
things (gate calibration, probes, heads) are made from, and a loader. ``run``, ``eval``, ``bank build``,
``calibrate`` and ``bank replay`` look benchmarks up here; an unknown split is an error that lists the
known ones. A split may join several with ``+`` (``train+validation``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from valueagent.tasks import Task

__all__ = ["BENCHMARKS", "Benchmark", "benchmark", "benchmark_of"]


@dataclass(frozen=True, kw_only=True)
class Benchmark:
    """A task set shipped with (or found by) the package, with a frozen split."""

    name: str
    splits: tuple[str, ...]
    eval_split: str
    fit_split: str
    load: Callable[[str], tuple[Task, ...]]
    describe: Callable[[], dict[str, Any]]
    id_prefix: str

    def check_split(self, split: str) -> str:
        """``split`` when every ``+``-joined part is one of this benchmark's splits; else a ValueError."""
        bad = [p for p in split.split("+") if p not in self.splits]
        if bad or not split:
            raise ValueError(f"--split {split!r} is not a {self.name} split: use {', '.join(self.splits)} "
                             "(join two with +)")
        return split

    def tasks(self, split: str) -> tuple[Task, ...]:
        return self.load(self.check_split(split))


def _humaneval(split: str) -> tuple[Task, ...]:
    from valueagent.tasks import humaneval_split, load_humaneval

    if "all" in split.split("+"):
        return load_humaneval()
    wanted = {t.task_id for part in split.split("+") for t in humaneval_split(part)}  # type: ignore[arg-type]
    return tuple(t for t in load_humaneval() if t.task_id in wanted)


def _humaneval_record() -> dict[str, Any]:
    from valueagent.tasks import dataset_hash, load_humaneval

    return {"benchmark": "humaneval", "dataset_hash": dataset_hash(load_humaneval()),
            "split_file": "valueagent/data/humaneval_split.json"}


def _mbpp(split: str) -> tuple[Task, ...]:
    from valueagent.mbpp import mbpp_split

    return mbpp_split(split)


def _mbpp_record() -> dict[str, Any]:
    from valueagent.mbpp import split_record

    return split_record()


BENCHMARKS: Mapping[str, Benchmark] = {
    "humaneval": Benchmark(name="humaneval", splits=("eval", "calibration", "all"), eval_split="eval",
                           fit_split="calibration", load=_humaneval, describe=_humaneval_record,
                           id_prefix="HumanEval/"),
    "mbpp": Benchmark(name="mbpp", splits=("test", "validation", "train", "prompt", "all"), eval_split="test",
                      fit_split="train+validation", load=_mbpp, describe=_mbpp_record, id_prefix="Mbpp/"),
}


def benchmark(name: str) -> Benchmark:
    """The benchmark called ``name``; a ValueError naming the known ones otherwise."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}: use {', '.join(BENCHMARKS)} or a task file") from None


def benchmark_of(task_ids: Any) -> Benchmark | None:
    """The benchmark whose ids these are (by prefix), or None for a task file of one's own."""
    ids = list(task_ids)
    for bench in BENCHMARKS.values():
        if ids and all(str(t).startswith(bench.id_prefix) for t in ids):
            return bench
    return None
