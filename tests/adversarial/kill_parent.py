"""Signals the test process, then kills its parent, its parent's process group and its own group.

By hand (no params.json) it only kills its own process group.
"""

import json
import os
import signal

from _params import load

params = load()
results = {}
actions = []
if "host_pid" in params:  # harmless: the test counts SIGUSR1 with a handler
    actions.append(("host", lambda: os.kill(params["host_pid"], signal.SIGUSR1)))
if params.get("kill_parent"):
    actions.append(("parent_group", lambda: os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)))
    actions.append(("parent", lambda: os.kill(os.getppid(), signal.SIGKILL)))
for name, action in actions:
    try:
        action()
        results[name] = "sent"
    except OSError as exc:
        results[name] = exc.strerror
print(json.dumps(results), flush=True)
os.killpg(0, signal.SIGKILL)
