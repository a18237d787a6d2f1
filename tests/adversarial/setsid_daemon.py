"""Leaves a daemon behind: double fork, new session, a `sleep` that would outlive the run (7 s)."""

import os

from _params import load

token = load().get("token", "0")
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        try:
            os.execv("/bin/sleep", ["sleep", f"7.{token}"])
        finally:
            os._exit(0)
    os._exit(0)
os.waitpid(pid, 0)
print("daemon started")
