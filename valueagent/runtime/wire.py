"""JSON forms of the backend's dataclasses, shared by the server and the HTTP backend.

Both directions go through :func:`dataclasses.fields`, so a field added to ``GenerationRequest``,
``Generation``, ``Scored`` or ``ModelInfo`` travels over HTTP without an edit here.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def to_json(obj: Any) -> dict[str, Any]:
    """A dataclass instance as a JSON-ready dict (tuples become lists)."""
    plain: dict[str, Any] = _plain(dataclasses.asdict(obj))
    return plain


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def from_json(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build dataclass ``cls`` from JSON: keys it does not know are dropped (a newer peer may send more),
    lists become tuples where the field is a tuple. Raises ``ValueError`` for a missing required field and
    whatever the dataclass's own checks raise."""
    names = field_names(typing.cast(type, cls))
    tuples = _tuple_fields(typing.cast(type, cls))
    kwargs = {k: (_tupled(v) if k in tuples and isinstance(v, list) else v) for k, v in data.items() if k in names}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"{cls.__name__}: {exc}") from exc


def _tupled(v: list[Any]) -> tuple[Any, ...]:
    return tuple(dict(x) if isinstance(x, dict) else x for x in v)


@functools.cache
def field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


@functools.cache
def _tuple_fields(cls: type) -> frozenset[str]:
    hints = typing.get_type_hints(cls)
    return frozenset(name for name in field_names(cls) if _is_tuple(hints[name]))


def _is_tuple(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is tuple or tp is tuple:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple(a) for a in typing.get_args(tp))
    return False
