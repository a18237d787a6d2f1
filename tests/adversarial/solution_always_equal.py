"""A completion whose results claim to equal anything."""


class Anything:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = object.__hash__


class LyingInt(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


def f(x):
    return Anything() if x % 2 else LyingInt(7)
