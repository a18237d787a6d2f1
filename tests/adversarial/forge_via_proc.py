"""Steals the nonce from its parent's job pipe through /proc, writes a forged verdict, kills the parent.

By hand (no params.json) it does nothing.
"""

import json
import os
import signal

from _params import load

params = load()
result = "skipped"
if params.get("kill_parent"):
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
        ctl, verdict = int(argv[-3]), int(argv[-2])
        source = os.open(f"/proc/{parent}/fd/{ctl}", os.O_RDONLY | os.O_NONBLOCK)
        nonce = os.read(source, 1 << 20)[4:36].decode()
        sink = os.open(f"/proc/{parent}/fd/{verdict}", os.O_WRONLY)
        outcome = {"report": "done", "exit": 0, "signal": None, "timeout": False, "duration": 0.0}
        os.write(sink, (json.dumps({"event": "final", "nonce": nonce, "outcome": outcome}) + "\n").encode())
        os.kill(parent, signal.SIGKILL)
        result = "forged"
    except (OSError, ValueError, IndexError) as exc:
        result = f"refused: {exc}"
print(result, flush=True)
os._exit(0)
