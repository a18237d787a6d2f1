"""A wrong completion that kills the process running the tests (its parent) when called.

It only fires when its parent is the sandbox's runner, so running it by hand kills nothing.
"""

import os
import signal


def f(x):
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as handle:
            is_runner = b"marshal.loads" in handle.read()
    except OSError:
        is_runner = False
    if is_runner:
        os.kill(parent, signal.SIGKILL)
    return None
