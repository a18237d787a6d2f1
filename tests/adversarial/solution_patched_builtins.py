"""A wrong completion that patches builtins and modules the tests might rely on."""

import builtins
import math
import operator

builtins.abs = lambda value: 0
builtins.len = lambda value: 0
builtins.isinstance = lambda *args: True
builtins.AssertionError = type("AssertionError", (Exception,), {})
math.fabs = lambda value: 0.0
math.isclose = lambda *args, **kwargs: True
operator.eq = lambda a, b: True


def f(x):
    return None
