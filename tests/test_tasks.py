"""Task types, the hidden-test boundary, visible-test parsing, loaders and the frozen split."""

from __future__ import annotations

import ast
import dataclasses
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from valueagent.tasks import (
    HUMANEVAL_EXCLUSIONS,
    PublicTask,
    Task,
    TaskFormatError,
    VisibleTest,
    dataset_hash,
    humaneval_split,
    load_humaneval,
    load_jsonl,
    make_split,
    parse_visible_tests,
)

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = "def check(candidate):\n    assert candidate(1) == 'SECRET-HIDDEN-ANSWER'\n"


def _prompt(body: str, sig: str = "f(x)") -> str:
    return f'def {sig}:\n    """Do the thing.\n{body}\n    """\n'


def _pairs(prompt: str, entry_point: str = "f") -> list[tuple[str, str]]:
    return [(t.call, t.expected) for t in parse_visible_tests(prompt, entry_point)]


# ---------------------------------------------------------------- the hidden-test boundary

def test_hidden_test_never_reaches_the_public_view() -> None:
    task = Task("t/0", _prompt("    >>> f(1)\n    2"), "f", HIDDEN, "    return 2\n")
    assert "SECRET" not in repr(task) and "return 2" not in repr(task)
    public = task.public()
    assert isinstance(public, PublicTask)
    names = {f.name for f in dataclasses.fields(public)}
    assert names == {"task_id", "prompt", "entry_point", "visible_tests"}
    assert not hasattr(public, "test") and not hasattr(public, "canonical_solution")
    with pytest.raises((AttributeError, TypeError)):
        public.test = HIDDEN  # type: ignore[attr-defined]
    assert "SECRET" not in json.dumps(public.to_dict())
    assert PublicTask.from_dict(json.loads(json.dumps(public.to_dict()))) == public


def test_no_humaneval_hidden_test_leaks_into_public_tasks() -> None:
    for task in load_humaneval():
        blob = json.dumps(task.public().to_dict())
        assert task.test.strip() not in blob
        assert "candidate(" not in blob  # the hidden tests call `candidate`, prompts never do


# ---------------------------------------------------------------- parsing example styles

def test_doctest_style_with_multiline_output_and_none() -> None:
    prompt = _prompt(
        "    >>> f([1, 2])  # a comment\n    [2,\n     3]\n    >>> f([])\n\n    >>> f(0) == 1\n"
    )
    assert _pairs(prompt) == [("f([1, 2])", "[2, 3]"), ("f([])", "None"), ("f(0)", "1")]


@pytest.mark.parametrize(
    "line,expected",
    [
        ("f(3) ==> True", "True"),
        ("f(3) => true", "True"),
        ("f(3) == [1, 2]", "[1, 2]"),
        ("f(3) = 14", "14"),
        ("f(3) ➞ 'a'", "'a'"),
        ("* f(3) -> [11, 4]", "[11, 4]"),
        ("f(3) returns 'ehllo'", "'ehllo'"),
        ("f(3) should return 16.", "16"),
        ("f(3)   # returns \"db1db\"", '"db1db"'),
        ("f(3) # => 'No' (the name should start with a letter)", "'No'"),
        ("for f(3) == 34", "34"),
        ("f(3) ->19 - 5 - 6 = 8", "8"),
        ("f(3) == 1 + 9 + 0 + 0 = 10", "10"),
        ("f(3) ==> (1, 1) # comment", "(1, 1)"),
    ],
)
def test_inline_styles(line: str, expected: str) -> None:
    assert _pairs(_prompt(f"    {line}")) == [("f(3)", expected)]


def test_for_input_output_and_return_styles() -> None:
    two = "f(s, c)"
    assert _pairs(_prompt('    For s = "ab", c = "b", the result should be (\'a\',False)', two)) == [
        ('f("ab", "b")', "('a',False)")
    ]
    assert _pairs(_prompt("    For N = 1000, the sum of digits will be 1 the output should be \"1\".")) == [
        ("f(1000)", '"1"')
    ]
    io = "    Example 1:\n        Input: grid : [[0,1], [1,1]]\n            cap : 2\n        Output: 5 # note"
    assert _pairs(_prompt(io, "f(grid, capacity)")) == [("f([[0,1], [1,1]], 2)", "5")]
    assert _pairs(_prompt("        Input: arr = [4, 2], k = 1\n        Output: [4]", "f(arr, k)")) == [
        ("f([4, 2], 1)", "[4]")
    ]
    assert _pairs(_prompt("        Input: 3\n        Output: (1, 2)")) == [("f(3)", "(1, 2)")]
    assert _pairs(_prompt("      x = [2, 1]\n        -> sort x -> [1, 2]\n      return ['One', 'Two']")) == [
        ("f([2, 1])", "['One', 'Two']")
    ]


def test_multiline_call() -> None:
    prompt = _prompt("    f([\n      [1, 2],\n      [3]\n    ], 1) == [(0, 0)]", "f(lst, x)")
    assert _pairs(prompt) == [("f([ [1, 2], [3] ], 1)", "[(0, 0)]")]


@pytest.mark.parametrize(
    "line",
    [
        "g(3) == 4",  # not the entry point
        "f(a) => False",  # free name: not a valid call
        'f(["a"]) == ""aaaa"',  # expected does not parse
        "f(3) = f(2) + f(1)",  # expected is not a literal
        "f(3) == __import__('os').system('touch /tmp/valueagent-parse-ran')",
        "Write a function f() that returns the 2nd smallest element",
        "def f(x) -> int:",
    ],
)
def test_rejected_examples(line: str) -> None:
    assert _pairs(_prompt(f"    {line}")) == []
    assert not Path("/tmp/valueagent-parse-ran").exists()


def test_duplicates_are_dropped_and_order_follows_the_prompt() -> None:
    prompt = _prompt("    f(2) == 3\n    >>> f(1)\n    2\n    f(1) => 2")
    assert _pairs(prompt) == [("f(2)", "3"), ("f(1)", "2")]


# ---------------------------------------------------------------- HumanEval figures

def test_humaneval_visible_tests_are_well_formed_and_plentiful() -> None:
    tasks = load_humaneval()
    assert len(tasks) == 164 and len({t.task_id for t in tasks}) == 164
    publics = [t.public() for t in tasks]
    with_tests = [p for p in publics if p.visible_tests]
    assert len(with_tests) >= 150
    assert sum(len(p.visible_tests) for p in publics) >= 400
    # the anchor in FACTS.md: 39 of HumanEval/0-39 yield visible tests
    assert sum(bool(p.visible_tests) for p in publics[:40]) == 39
    for p in publics:
        for t in p.visible_tests:
            tree = ast.parse(t.call, mode="eval")
            assert any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == p.entry_point
                       for n in ast.walk(tree))
            ast.parse(t.expected, mode="eval")
            assert t.source


def test_exclusions_refer_to_parsed_cases_and_are_dropped() -> None:
    by_id = {t.task_id: t for t in load_humaneval()}
    for (task_id, call), reason in HUMANEVAL_EXCLUSIONS.items():
        task = by_id[task_id]
        assert reason
        assert call in {t.call for t in parse_visible_tests(task.prompt, task.entry_point)}
        assert call not in {t.call for t in task.public().visible_tests}


@pytest.mark.slow
def test_canonical_solutions_pass_their_visible_tests() -> None:
    """Runs task code in child processes (never here) through the check script."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_humaneval_visible_tests.py"), "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, [f for f in report["failures"] if not f["excluded"]]
    assert report["canonical_passes_all_visible"] == report["tasks_with_visible_tests"]


# ---------------------------------------------------------------- loading

def _write(path: Path, records: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    return path


def test_load_jsonl_round_trip(tmp_path: Path) -> None:
    tasks = load_humaneval()[:3]
    path = _write(tmp_path / "t.jsonl", [t.to_dict() for t in tasks])
    assert load_jsonl(path) == tasks
    gz = tmp_path / "t.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(path.read_text())
    assert load_jsonl(gz) == tasks
    minimal = _write(tmp_path / "m.jsonl", [{"task_id": "a", "prompt": "p", "entry_point": "f", "test": "t"}])
    assert load_jsonl(minimal)[0].canonical_solution is None


def test_load_jsonl_errors_name_the_line_and_field(tmp_path: Path) -> None:
    good = {"task_id": "a", "prompt": "p", "entry_point": "f", "test": "t"}
    bad = {k: v for k, v in good.items() if k != "entry_point"} | {"task_id": "b"}
    with pytest.raises(TaskFormatError, match=r"bad\.jsonl:2: missing field 'entry_point'"):
        load_jsonl(_write(tmp_path / "bad.jsonl", [good, bad]))
    (tmp_path / "junk.jsonl").write_text('{"task_id": "a"\n')
    with pytest.raises(TaskFormatError, match=r"junk\.jsonl:1: not valid JSON"):
        load_jsonl(tmp_path / "junk.jsonl")
    with pytest.raises(TaskFormatError, match="duplicate task_id 'a'"):
        load_jsonl(_write(tmp_path / "dup.jsonl", [good, good]))
    with pytest.raises(TaskFormatError, match="must be a string"):
        load_jsonl(_write(tmp_path / "type.jsonl", [good | {"test": 3}]))


def test_dataset_hash_is_order_free_and_content_sensitive() -> None:
    tasks = load_humaneval()[:5]
    assert dataset_hash(tasks) == dataset_hash(reversed(tasks))
    changed = (dataclasses.replace(tasks[0], test=tasks[0].test + "\n"), *tasks[1:])
    assert dataset_hash(changed) != dataset_hash(tasks)
    assert dataset_hash(tasks).startswith("sha256:")


# ---------------------------------------------------------------- the frozen split

def test_humaneval_split_partitions_the_dataset() -> None:
    calib, evals, every = humaneval_split("calibration"), humaneval_split("eval"), humaneval_split("all")
    assert len(calib) == 40 and len(evals) == 124 and len(every) == 164
    assert not {t.task_id for t in calib} & {t.task_id for t in evals}
    with pytest.raises(ValueError, match="unknown split"):
        humaneval_split("test")  # type: ignore[arg-type]


def test_shipped_split_matches_its_recipe() -> None:
    spec = json.loads((ROOT / "valueagent" / "data" / "humaneval_split.json").read_text())
    ids = [t.task_id for t in load_humaneval()]
    assert make_split(ids, n_calibration=spec["n_calibration"], seed=spec["seed"]) == {
        "calibration": spec["calibration"], "eval": spec["eval"]
    }
    assert spec["dataset_hash"] == dataset_hash(load_humaneval())


def test_make_split_is_seeded() -> None:
    ids = [f"T/{i}" for i in range(50)]
    assert make_split(ids, n_calibration=10, seed=1) == make_split(ids, n_calibration=10, seed=1)
    assert make_split(ids, n_calibration=10, seed=1) != make_split(ids, n_calibration=10, seed=2)
    with pytest.raises(ValueError):
        make_split(ids, n_calibration=51)


def test_visible_test_is_plain_data() -> None:
    t = VisibleTest("f(1)", "2", ">>> f(1)\n2")
    assert VisibleTest(**t.to_dict()) == t
