"""Visible tests parsed from a prompt's own examples — by ``ast.parse`` only, never executed.

Split out of ``tasks.py``: the parser is the larger half and changes for other reasons (new example
styles) than the task types do.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass


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
