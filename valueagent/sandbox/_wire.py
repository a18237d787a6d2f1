"""Plain data across the sandbox boundary: a tagged codec, strict equality, length-prefixed frames.

This module runs in two places: imported by the host (and tests), and pasted into the trusted
runner's source, which runs inside the sandbox under the system python3. So it imports only cheap
built-in modules, has no ``from __future__`` line, and nothing happens at import.

The codec carries exactly None, bool, int, float, complex, str, bytes, list, tuple, dict, set and
frozenset, checked by exact type. A value that a solution computes crosses to the checking process
as bytes and comes back as genuine built-in objects, so an object with an always-true ``__eq__`` or
a subclass with a lying ``__repr__`` cannot reach the comparison.
"""

import math
import os
import select
import time

MAX_DEPTH = 100
FRAME_LIMIT = 16 << 20

_SEQ_TAGS = {list: b"l", tuple: b"t", set: b"e", frozenset: b"z"}
_SEQ_TYPES = {b"l"[0]: list, b"t"[0]: tuple, b"e"[0]: set, b"z"[0]: frozenset}


class WireError(ValueError):
    """Bytes that are not a well-formed encoding, or a value that cannot be encoded."""


class FrameTimeout(Exception):
    """No complete frame arrived before the deadline."""


class FrameClosed(Exception):
    """The other end closed the pipe (or its process died) before a complete frame arrived."""


def encode(value):
    """Encode plain data; raise ``WireError`` for anything else (subclasses included)."""
    out = []
    _encode(value, out, 0)
    return b"".join(out)


def _encode(value, out, depth):
    if depth > MAX_DEPTH:
        raise WireError(f"value is nested more than {MAX_DEPTH} levels deep (or contains itself)")
    kind = type(value)
    if value is None:
        out.append(b"N")
    elif kind is bool:
        out.append(b"T" if value else b"F")
    elif kind is int:
        out.append(b"i%x;" % value)
    elif kind is float:
        out.append(b"f" + repr(value).encode() + b";")
    elif kind is complex:
        out.append(b"j" + repr(value.real).encode() + b"," + repr(value.imag).encode() + b";")
    elif kind is str:
        data = value.encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(data))
        out.append(data)
    elif kind is bytes:
        out.append(b"b%d:" % len(value))
        out.append(value)
    elif kind in _SEQ_TAGS:
        out.append(_SEQ_TAGS[kind] + b"%d;" % len(value))
        for item in value:
            _encode(item, out, depth + 1)
    elif kind is dict:
        out.append(b"d%d;" % len(value))
        for key, item in value.items():
            _encode(key, out, depth + 1)
            _encode(item, out, depth + 1)
    else:
        raise WireError(
            f"a value of type {kind.__qualname__} cannot cross the sandbox boundary; return plain data "
            "(None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)"
        )


def decode(data):
    """Decode bytes from ``encode``; any malformed input raises ``WireError``, nothing else."""
    data = bytes(data)
    try:
        value, end = _decode(data, 0, 0)
    except WireError:
        raise
    except (ValueError, TypeError, IndexError, OverflowError, RecursionError, UnicodeDecodeError) as exc:
        raise WireError(f"malformed data: {type(exc).__name__}") from None
    if end != len(data):
        raise WireError("malformed data: trailing bytes")
    return value


def _decode(data, pos, depth):
    if depth > MAX_DEPTH:
        raise WireError("malformed data: nested too deeply")
    tag = data[pos]
    pos += 1
    if tag == 78:  # N
        return None, pos
    if tag == 84:  # T
        return True, pos
    if tag == 70:  # F
        return False, pos
    if tag in (105, 102, 106):  # i f j
        end = data.index(b";", pos)
        text = data[pos:end].decode("ascii")
        if tag == 105:
            return int(text, 16), end + 1
        if tag == 102:
            return float(text), end + 1
        real, imag = text.split(",")
        return complex(float(real), float(imag)), end + 1
    if tag in (115, 98):  # s b
        colon = data.index(b":", pos)
        size = int(data[pos:colon].decode("ascii"), 10)
        if size < 0 or colon + 1 + size > len(data):
            raise WireError("malformed data: length out of range")
        raw = data[colon + 1 : colon + 1 + size]
        value = raw.decode("utf-8", "surrogatepass") if tag == 115 else raw
        return value, colon + 1 + size
    if tag in _SEQ_TYPES or tag == 100:  # l t e z d
        end = data.index(b";", pos)
        count = int(data[pos:end].decode("ascii"), 10)
        pos = end + 1
        per_item = 2 if tag == 100 else 1
        if count < 0 or count * per_item > len(data) - pos:
            raise WireError("malformed data: count out of range")
        items = []
        for _ in range(count * per_item):
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        if tag == 100:
            return dict(zip(items[0::2], items[1::2], strict=True)), pos
        return _SEQ_TYPES[tag](items), pos
    raise WireError(f"malformed data: unknown tag {tag!r}")


def strict_equal(a, b):
    """Equality that also requires identical types, recursively (``1 != 1.0 != True``).

    Floats are equal when within 1e-9 relative (1e-12 absolute) of each other, and NaN equals NaN.
    """
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is float:
        return _close(a, b)
    if kind is complex:
        return _close(a.real, b.real) and _close(a.imag, b.imag)
    if kind is list or kind is tuple:
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=True))
    if kind is dict:
        if len(a) != len(b):
            return False
        typed = {(type(key), key): value for key, value in b.items()}
        for key, value in a.items():
            other = typed.get((type(key), key), typed)
            if other is typed or not strict_equal(value, other):
                return False
        return True
    if kind is set or kind is frozenset:
        return {(type(x), x) for x in a} == {(type(x), x) for x in b}
    return bool(a == b)


def _close(x, y):
    if x != x or y != y:
        return x != x and y != y
    return x == y or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def write_frame(fd, payload):
    """Write one length-prefixed frame, blocking until it is all written."""
    view = memoryview(len(payload).to_bytes(4, "big") + payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_frame(fd, *, deadline=None, limit=FRAME_LIMIT, watch=None):
    """Read one frame. ``deadline`` is a ``time.monotonic()`` value; ``watch`` an fd (a pidfd) whose
    readiness with no data pending means the writer is gone. Raises FrameTimeout, FrameClosed, WireError.
    """
    size = int.from_bytes(_read_exact(fd, 4, deadline, watch), "big")
    if size > limit:
        raise WireError(f"frame of {size} bytes exceeds the {limit}-byte limit")
    return _read_exact(fd, size, deadline, watch)


def _read_exact(fd, size, deadline, watch):
    chunks = []
    missing = size
    while missing:
        if deadline is not None or watch is not None:
            fds = [fd] if watch is None else [fd, watch]
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select(fds, [], [], remaining)
            if fd not in ready:
                if watch is not None and watch in ready:
                    raise FrameClosed("the process at the other end exited")
                raise FrameTimeout("no answer before the deadline")
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            raise FrameClosed("the pipe was closed")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)
