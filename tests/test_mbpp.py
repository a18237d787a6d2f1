"""MBPP: the shipped files, the standard split, the task format, the hidden-test boundary, samples files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import valueagent.mbpp as mbpp
from valueagent.benchmarks import BENCHMARKS, benchmark, benchmark_of
from valueagent.eval.samples import sample_line
from valueagent.tasks import TaskFormatError, load_jsonl

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_files_are_the_original_ones_and_the_split_is_standard() -> None:
    problems = mbpp.mbpp_problems()
    assert len(problems) == 974 and [p["task_id"] for p in problems] == list(range(1, 975))
    assert len(mbpp.sanitized_problems()) == 427
    excluded = mbpp.mbpp_exclusions()
    sizes = {name: len(mbpp.mbpp_split(name)) for name in ("prompt", "test", "validation", "train")}
    expected = {name: hi - lo + 1 - sum(mbpp.split_of(t) == name for t in excluded)
                for name, (lo, hi) in mbpp.MBPP_SPLITS.items()}
    assert sizes == expected and sizes["test"] == 497
    ids = {name: {t.task_id for t in mbpp.mbpp_split(name)} for name in sizes}
    assert not ids["test"] & (ids["train"] | ids["validation"] | ids["prompt"])
    assert {t.task_id for t in mbpp.mbpp_split("train+validation")} == ids["train"] | ids["validation"]
    assert not set(excluded) & {t.task_id for t in mbpp.load_mbpp()}
    assert all(reason for reason in excluded.values())


def test_a_corrupted_data_file_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    blob = mbpp._data("mbpp.jsonl").replace(b"similar_elements", b"similar_elementz", 1)
    monkeypatch.setattr(mbpp, "_data", lambda name: blob)
    mbpp.mbpp_problems.cache_clear()
    try:
        with pytest.raises(TaskFormatError, match="corrupted.*reinstall valueagent"):
            mbpp.mbpp_problems()
    finally:
        mbpp.mbpp_problems.cache_clear()


def test_task_format_shows_the_first_assert_and_hides_the_rest() -> None:
    task = next(t for t in mbpp.load_mbpp() if t.task_id == "Mbpp/2")
    record = mbpp.mbpp_problems()[1]
    first, *others = record["test_list"]
    assert task.entry_point == "similar_elements"
    assert first in task.prompt and record["text"] in task.prompt
    public = task.public()
    assert [(v.call, v.expected) for v in public.visible_tests] == [
        ("(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == ((4, 5))", "True")]
    blob = json.dumps(public.to_dict())
    for hidden in others:
        assert hidden not in blob and hidden in task.test
    assert task.test.startswith("def check(candidate):")


def test_no_hidden_assert_of_any_mbpp_task_reaches_the_agent() -> None:
    for record, task in zip(mbpp.mbpp_problems(), mbpp.load_mbpp(include_excluded=True), strict=True):
        blob = json.dumps(task.public().to_dict())
        assert task.task_id == f"Mbpp/{record['task_id']}"
        for hidden in (*record["test_list"][1:], *record["challenge_test_list"]):
            if hidden.strip() != record["test_list"][0].strip():
                assert hidden.strip() not in blob, task.task_id
        assert task.canonical_solution is not None and task.canonical_solution not in blob
        assert len(task.public().visible_tests) == 1


def test_challenge_tests_and_setup_code_are_part_of_the_hidden_test() -> None:
    record = next(r for r in mbpp.mbpp_problems() if r["challenge_test_list"])
    task = mbpp.mbpp_task(record)
    for line in record["challenge_test_list"]:
        assert line.replace("\r\n", "\n").strip() in task.test
    setup = next(r for r in mbpp.mbpp_problems() if r["test_setup_code"])
    assert "root = Node(1)" in mbpp.mbpp_task(setup).test


def test_an_entry_point_that_shadows_a_builtin_is_still_found() -> None:
    assert mbpp.mbpp_task(mbpp.mbpp_problems()[125]).entry_point == "sum"  # MBPP 126 defines sum(a, b)


def test_benchmarks_name_their_splits_and_refuse_unknown_ones() -> None:
    assert set(BENCHMARKS) == {"humaneval", "mbpp"}
    assert benchmark("mbpp").eval_split == "test" and benchmark("humaneval").eval_split == "eval"
    with pytest.raises(ValueError, match="not a mbpp split: use test, validation"):
        benchmark("mbpp").tasks("tset")
    with pytest.raises(ValueError, match="unknown benchmark 'mbp'"):
        benchmark("mbp")
    assert benchmark_of(["Mbpp/11", "Mbpp/12"]) is BENCHMARKS["mbpp"]
    assert benchmark_of(["HumanEval/0"]) is BENCHMARKS["humaneval"] and benchmark_of(["t/0"]) is None
    assert len(benchmark("humaneval").tasks("eval+calibration")) == 164


def test_samples_line_has_evalplus_mbpp_shape_and_runs_as_a_program() -> None:
    task = next(t for t in mbpp.load_mbpp() if t.task_id == "Mbpp/2")
    line = sample_line(task, "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))\n")
    assert set(line) == {"task_id", "solution"} and line["task_id"] == "Mbpp/2"
    compile(line["solution"], "<solution>", "exec")
    assert "def similar_elements" in line["solution"]


def test_a_task_file_may_state_its_visible_tests(tmp_path: Path) -> None:
    task = next(t for t in mbpp.load_mbpp() if t.task_id == "Mbpp/2")
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(task.to_dict()) + "\n")
    (loaded,) = load_jsonl(path)
    assert loaded.public() == task.public()
    bad = {**task.to_dict(), "visible_tests": [{"call": 1}]}
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(TaskFormatError, match="tasks.jsonl:1: a visible test"):
        load_jsonl(path)


@pytest.mark.slow
def test_the_listed_exclusions_are_what_the_references_fail_here() -> None:
    """Every reference runs against its hidden and visible tests in the sandbox (~30 s on 2 cores)."""
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_mbpp_references.py")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "0 pass the hidden asserts but not the type-strict visible case" in res.stderr
