"""The codec and the strict equality that carry values across the sandbox boundary (in-process)."""

from __future__ import annotations

import random

import pytest

from valueagent.sandbox._wire import MAX_DEPTH, WireError, decode, encode, strict_equal


def _random_value(rng: random.Random, depth: int = 0) -> object:
    scalars = [
        lambda: None,
        lambda: rng.random() < 0.5,
        lambda: rng.randint(-(10**30), 10**30),
        lambda: rng.uniform(-1e9, 1e9),
        lambda: complex(rng.random(), -rng.random()),
        lambda: "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 8))),
        lambda: bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 8))),
    ]
    if depth > 3 or rng.random() < 0.4:
        return rng.choice(scalars)()
    kind = rng.choice(["list", "tuple", "dict", "set", "frozenset"])
    items = [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "list":
        return items
    if kind == "tuple":
        return tuple(items)
    keys = [rng.randint(-5, 5) for _ in items] if kind == "dict" else []
    if kind == "dict":
        return dict(zip(keys, items, strict=True))
    hashable = [rng.choice(scalars)() for _ in items]
    return set(hashable) if kind == "set" else frozenset(hashable)


def test_random_values_round_trip_exactly() -> None:
    rng = random.Random(0)
    for _ in range(500):
        value = _random_value(rng)
        back = decode(encode(value))
        assert strict_equal(back, value), value
        assert type(back) is type(value)


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -0.0, 2**4400, "\ud800lone surrogate", b"\x00\xff", (), [], {}, set(), frozenset()],
)
def test_edge_values_round_trip(value: object) -> None:
    back = decode(encode(value))
    assert type(back) is type(value)
    assert strict_equal(back, value)


class Sneaky(int):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


@pytest.mark.parametrize("value", [Sneaky(3), object(), [1, object()], {"k": lambda: 1}, range(3), iter([1])])
def test_only_exact_builtin_types_encode(value: object) -> None:
    with pytest.raises(WireError, match="cannot cross the sandbox boundary"):
        encode(value)


def test_self_containing_value_is_refused_not_a_recursion_crash() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(WireError, match="nested"):
        encode(loop)


def test_corrupted_bytes_decode_to_a_value_or_wire_error_only() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        data = bytearray(encode(_random_value(rng)))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.choice(b"NTFifjsbltezd;:,-0123456789\xff")
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data) + 1)]
        try:
            decode(bytes(data))
        except WireError:
            pass


def test_decoder_refuses_deep_nesting_and_oversized_counts() -> None:
    with pytest.raises(WireError):
        decode(b"l1;" * (MAX_DEPTH + 5) + b"N")
    with pytest.raises(WireError):
        decode(b"l999999999;N")
    with pytest.raises(WireError):
        decode(b"s999:abc")
    with pytest.raises(WireError):
        decode(b"d1;l0;N")  # an unhashable key


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1, True),
        (1, True, False),
        (1, 1.0, False),
        ([1, 2], (1, 2), False),
        ({1: "a"}, {True: "a"}, False),
        ({"a": [1, 2.5]}, {"a": [1, 2.5]}, True),
        (0.1 + 0.2, 0.3, True),
        (1e-3, 1.1e-3, False),
        (float("nan"), float("nan"), True),
        ({1, 2}, {2, 1}, True),
        ({1}, {True}, False),
        ("1", 1, False),
        (None, 0, False),
    ],
)
def test_strict_equal(a: object, b: object, equal: bool) -> None:
    assert strict_equal(a, b) is equal
    assert strict_equal(b, a) is equal
