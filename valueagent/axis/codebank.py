"""The project's own small Python tasks and their mutants (correct vs corrupted code).

Tasks live in ``valueagent/data/codebank.txt`` (written for valueagent, none from HumanEval): a
function with a docstring (with ``>>>`` examples) and assert lines. Four mutant kinds edit only the
body, keeping the text otherwise byte-identical: ``logic`` (one operator/constant/keyword token
changed; the mutant must fail its tests), ``swap`` (two adjacent simple lines exchanged; preferably
changing behaviour), ``syntax`` (``ast.parse`` must fail), ``rename`` (local variables renamed to
meaningless names; must still pass).

Code is only ever run in a separate interpreter (``python -I``), several programs per process,
each in a fresh namespace under a CPU-time alarm and a memory cap.
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import keyword
import os
import random
import re
import subprocess
import sys
import tokenize
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

__all__ = [
    "CodeTask",
    "MutantKind",
    "Mutant",
    "build_mutants",
    "humaneval_record",
    "load_codebank",
    "run_programs",
    "program_with_tests",
]

MutantKind = Literal["logic", "swap", "syntax", "rename"]
MUTANT_KINDS: tuple[MutantKind, ...] = ("logic", "swap", "syntax", "rename")
_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class CodeTask:
    """One task: ``source == prompt + body``; ``tests`` is the assert block (calls ``name``)."""

    name: str
    prompt: str
    body: str
    tests: str

    @property
    def source(self) -> str:
        """The complete correct function."""
        return self.prompt + self.body


@dataclass(frozen=True)
class Mutant:
    """A corrupted version of a task's function (``source == task.prompt + body``)."""

    task: str
    kind: MutantKind
    body: str
    source: str
    description: str
    passes_tests: bool  # False for syntax errors
    parses: bool


@cache
def load_codebank() -> tuple[CodeTask, ...]:
    """All tasks of the shipped code bank, in file order."""
    text = resources.files("valueagent").joinpath("data/codebank.txt").read_text(encoding="utf-8")
    tasks = []
    for block in re.split(r"(?m)^### ", text)[1:]:
        header, rest = block.split("\n", 1)
        source, tests = rest.split("\n---\n", 1)
        source = source.rstrip("\n") + "\n"
        func = ast.parse(source).body[0]
        if not isinstance(func, ast.FunctionDef) or func.name != header.strip():
            raise ValueError(f"codebank task {header!r}: the header must name the function defined below it")
        doc = func.body[0]
        if not (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and doc.end_lineno):
            raise ValueError(f"codebank task {header!r} needs a docstring")
        lines = source.splitlines(keepends=True)
        tasks.append(CodeTask(
            name=func.name,
            prompt="".join(lines[: doc.end_lineno]),
            body="".join(lines[doc.end_lineno:]),
            tests=tests.strip("\n") + "\n",
        ))
    return tuple(tasks)


def program_with_tests(source: str, tests: str) -> str:
    """Function source followed by its assert block: passes iff it runs without an exception."""
    return f"{source}\n\n{tests}"


def humaneval_record(task: CodeTask, index: int) -> dict[str, Any]:
    """The task in HumanEval's schema (``task_id`` ``VA/<index>``, ``test`` defines ``check(candidate)``)."""
    body = re.sub(rf"\b{task.name}\(", "candidate(", task.tests)
    test = "def check(candidate):\n" + "".join(f"    {line}\n" if line else "\n" for line in body.splitlines())
    return {
        "task_id": f"VA/{index}",
        "prompt": task.prompt,
        "entry_point": task.name,
        "canonical_solution": task.body,
        "test": test,
    }


_RUNNER = r"""
import json, resource, signal, sys
try:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
except (ValueError, OSError):
    pass
def _alarm(signum, frame):
    raise TimeoutError("time limit")
signal.signal(signal.SIGPROF, _alarm)
marker, limit, programs = json.loads(sys.stdin.read())
results = []
for src in programs:
    signal.setitimer(signal.ITIMER_PROF, limit)
    try:
        exec(compile(src, "<task>", "exec"), {"__name__": "__task__"})
        status = "passed"
    except TimeoutError:
        status = "timeout"
    except SyntaxError:
        status = "syntax_error"
    except BaseException as exc:
        status = "failed:" + type(exc).__name__
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    results.append(status)
sys.stdout.write("\n" + marker + json.dumps(results))
"""


def _python() -> str:
    return _PYTHON if os.path.exists(_PYTHON) else sys.executable


def run_programs(sources: Sequence[str], *, timeout_s: float = 0.5) -> list[str]:
    """Run programs in a separate ``python -I`` process (batched; a fresh namespace and a CPU-time
    limit of ``timeout_s`` each, so a loaded machine does not turn a pass into a timeout).

    Returns one status per program: ``passed``, ``timeout``, ``syntax_error`` or ``failed:<Exception>``.
    If a batch dies (a program that kills its interpreter), its programs are rerun one per process.
    """
    if not sources:
        return []
    marker = f"@@{uuid.uuid4().hex}@@"
    payload = json.dumps([marker, timeout_s, list(sources)])
    try:
        proc = subprocess.run(
            [_python(), "-I", "-c", _RUNNER], input=payload, capture_output=True, text=True,
            timeout=4 * timeout_s * len(sources) + 60,
        )
        out = proc.stdout.rsplit(marker, 1)
        if len(out) == 2:
            results = json.loads(out[1])
            if len(results) == len(sources):
                return [str(r) for r in results]
    except subprocess.TimeoutExpired:
        pass
    if len(sources) == 1:
        return ["crashed"]
    return [r for src in sources for r in run_programs([src], timeout_s=timeout_s)]


def _body_tokens(task: CodeTask) -> list[tokenize.TokenInfo]:
    first = task.prompt.count("\n") + 1
    toks = tokenize.generate_tokens(io.StringIO(task.source).readline)
    return [t for t in toks if t.start[0] >= first]


def _replace(source: str, row: int, col: int, old: str, new: str) -> str:
    lines = source.splitlines(keepends=True)
    line = lines[row - 1]
    assert line[col:col + len(old)] == old
    lines[row - 1] = line[:col] + new + line[col + len(old):]
    return "".join(lines)


_OP_SWAPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "==", "+": "-", "-": "+",
             "*": "+", "//": "/", "+=": "-=", "-=": "+=", "*=": "+="}
_NAME_SWAPS = {"and": "or", "or": "and", "True": "False", "False": "True", "min": "max", "max": "min",
               "break": "continue", "continue": "break"}
_METHOD_SWAPS = {"append": "extend", "extend": "append", "lower": "upper", "upper": "lower",
                 "isupper": "islower", "islower": "isupper", "isalpha": "isdigit", "isdigit": "isalpha",
                 "startswith": "endswith", "endswith": "startswith", "reverse": "sort", "items": "keys",
                 "partition": "rpartition"}
_STRING_SWAPS = {'" "': '""', '""': '" "'}


def _logic_candidates(task: CodeTask) -> list[tuple[str, str]]:
    out = []
    toks = _body_tokens(task)
    for i, t in enumerate(toks):
        (row, col), s = t.start, t.string
        after_dot = i > 0 and toks[i - 1].string == "."
        if t.type == tokenize.OP and s in _OP_SWAPS:
            news = [_OP_SWAPS[s]]
        elif t.type == tokenize.NAME and s in _NAME_SWAPS and not after_dot:
            news = [_NAME_SWAPS[s]]
        elif t.type == tokenize.NAME and s in _METHOD_SWAPS and after_dot:
            news = [_METHOD_SWAPS[s]]
        elif t.type == tokenize.STRING and s in _STRING_SWAPS:
            news = [_STRING_SWAPS[s]]
        elif t.type == tokenize.NUMBER and s.isdigit():
            news = [str(int(s) + 1)] + ([str(int(s) - 1)] if int(s) > 0 else [])
        else:
            continue
        for new in news:
            src = _replace(task.source, row, col, s, new)
            out.append((src, f"line {row - task.prompt.count(chr(10))} of the body: {s!r} -> {new!r}"))
    return out


def _swap_candidates(task: CodeTask) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Adjacent body lines exchanged, each position keeping its indentation; plain swaps of two
    simple lines at one indentation, and other swaps that still parse."""
    lines = task.source.splitlines(keepends=True)
    first = task.prompt.count("\n")
    plain: list[tuple[str, str]] = []
    other: list[tuple[str, str]] = []
    for i in range(first, len(lines) - 1):
        a, b = lines[i], lines[i + 1]
        if not a.strip() or not b.strip() or a.strip() == b.strip():
            continue
        ia, ib = a[: len(a) - len(a.lstrip())], b[: len(b) - len(b.lstrip())]
        src = "".join(lines[:i] + [ia + b.lstrip(), ib + a.lstrip()] + lines[i + 2:])
        if not _parses(src):
            continue
        simple = ia == ib and not a.rstrip().endswith(":") and not b.rstrip().endswith(":")
        (plain if simple else other).append((src, f"lines {i - first + 1} and {i - first + 2} of the body swapped"))
    return plain, other


def _syntax_candidates(task: CodeTask) -> list[tuple[str, str]]:
    out = []
    lines = task.source.splitlines()
    for t in _body_tokens(task):
        (row, col), s = t.start, t.string
        if row > len(lines):
            continue
        line = lines[row - 1]
        if t.type == tokenize.OP and s == ":" and line.rstrip().endswith(":") and col == len(line.rstrip()) - 1:
            out.append((_replace(task.source, row, col, ":", ""), "missing colon after a block header"))
        elif t.type == tokenize.OP and s in (")", "]"):
            out.append((_replace(task.source, row, col, s, ""), f"missing closing {s!r}"))
        elif t.type == tokenize.OP and s == "==":
            out.append((_replace(task.source, row, col, s, "="), "'==' written as '='"))
    return [(src, d) for src, d in out if not _parses(src)]


def _parses(source: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        try:
            ast.parse(source)
        except SyntaxError:
            return False
    return True


def _local_names(task: CodeTask) -> list[str]:
    func = ast.parse(task.source).body[0]
    assert isinstance(func, ast.FunctionDef)
    params = {a.arg for a in func.args.args + func.args.kwonlyargs}
    found: list[str] = []
    for node in ast.walk(func):
        name = None
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            name = node.id
        elif isinstance(node, ast.ExceptHandler):
            name = node.name
        if name and name not in params and name != func.name and name != "_" and name not in found:
            found.append(name)
    return found


def _rename(task: CodeTask, rng: random.Random) -> tuple[str, str] | None:
    names = _local_names(task)
    if not names:
        return None
    taken = {t.string for t in _body_tokens(task)} | set(dir(builtins)) | set(keyword.kwlist)
    mapping: dict[str, str] = {}
    for n in names:
        while True:
            new = rng.choice("bcdfghjklmnpqrstvwxz") + rng.choice("aeiouy") + str(rng.randint(0, 9))
            if new not in taken and new not in mapping.values():
                break
        mapping[n] = new
    src = task.source
    toks = _body_tokens(task)
    depth = 0
    edits = []
    for i, t in enumerate(toks):
        if t.type == tokenize.OP and t.string in "([{":
            depth += 1
        elif t.type == tokenize.OP and t.string in ")]}":
            depth -= 1
        if t.type != tokenize.NAME or t.string not in mapping:
            continue
        after_dot = i > 0 and toks[i - 1].string == "."
        kwarg = depth > 0 and i + 1 < len(toks) and toks[i + 1].string == "="
        if not after_dot and not kwarg:
            edits.append(t)
    for t in reversed(edits):
        src = _replace(src, t.start[0], t.start[1], t.string, mapping[t.string])
    return src, "renamed " + ", ".join(f"{k}->{v}" for k, v in mapping.items())


_ROUND = 3  # candidates per task and kind evaluated per batch


def build_mutants(
    tasks: Sequence[CodeTask] | None = None, *, seed: int = 0, timeout_s: float = 0.5
) -> list[Mutant]:
    """One mutant of each kind per task where one exists, chosen deterministically from ``seed``.

    Candidates are tried in a seeded order and verified by running the tests in subprocess batches:
    ``logic`` takes the first candidate that fails, ``swap`` the first that fails (else the first that
    parses, recorded with ``passes_tests=True``), ``rename`` must pass. Raises if a correct task fails.
    """
    tasks = list(tasks) if tasks is not None else list(load_codebank())
    statuses = run_programs([program_with_tests(t.source, t.tests) for t in tasks], timeout_s=timeout_s)
    for task, status in zip(tasks, statuses, strict=True):
        if status != "passed":
            raise RuntimeError(f"codebank task {task.name!r} fails its own tests ({status}); fix the bank")
    cands: dict[tuple[str, MutantKind], list[tuple[str, str]]] = {}
    for task in tasks:
        rng = random.Random(f"mutants:{seed}:{task.name}")
        logic = _logic_candidates(task)
        plain, other = _swap_candidates(task)
        syntax = _syntax_candidates(task)
        renamed = _rename(task, rng)
        cands[task.name, "logic"] = rng.sample(logic, len(logic))
        cands[task.name, "swap"] = rng.sample(plain, len(plain)) + rng.sample(other, len(other))
        cands[task.name, "syntax"] = rng.sample(syntax, min(1, len(syntax)))
        cands[task.name, "rename"] = [renamed] if renamed else []
    chosen: dict[tuple[str, MutantKind], tuple[str, str, bool]] = {}
    for key in [k for k in cands if k[1] == "syntax" and cands[k]]:
        chosen[key] = (*cands[key][0], False)
    open_keys = [k for k in cands if k[1] != "syntax" and cands[k]]
    by_name = {t.name: t for t in tasks}
    offset = 0
    while open_keys:
        batch = [(k, c) for k in open_keys for c in cands[k][offset:offset + _ROUND]]
        results = run_programs([program_with_tests(c[0], by_name[k[0]].tests) for k, c in batch], timeout_s=timeout_s)
        for (key, cand), status in zip(batch, results, strict=True):
            passed = status == "passed"
            if key in chosen:
                continue
            if key[1] == "rename" and not passed:
                raise RuntimeError(f"renaming changed the behaviour of {key[0]!r}: {cand[1]}")
            if key[1] == "rename" or not passed:
                chosen[key] = (*cand, passed)
        offset += _ROUND
        for key in open_keys:
            if key not in chosen and offset >= len(cands[key]) and key[1] == "swap":
                chosen[key] = (*cands[key][0], True)
        open_keys = [k for k in open_keys if k not in chosen and offset < len(cands[k])]
    out = []
    for task in tasks:
        for kind in MUTANT_KINDS:
            if (task.name, kind) not in chosen:
                continue
            src, description, passed = chosen[task.name, kind]
            out.append(Mutant(
                task=task.name, kind=kind, body=src[len(task.prompt):], source=src, description=description,
                passes_tests=passed, parses=_parses(src),
            ))
    return out
