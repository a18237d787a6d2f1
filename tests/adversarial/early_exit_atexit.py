"""Fails, but registers an atexit handler that turns the exit status into 0."""

import atexit
import os

atexit.register(os._exit, 0)
print("ALL TESTS PASSED")
raise AssertionError("a failing check")
