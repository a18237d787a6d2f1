"""Forks as many processes as it can (at most 300, each a `sleep` that exits within 6 s)."""

import json
import os

from _params import load

token = load().get("token", "0")
made = failed = 0
for _ in range(300):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        try:
            os.execv("/bin/sleep", ["sleep", f"6.{token}"])
        finally:
            os._exit(0)
    made += 1
print(json.dumps({"made": made, "failed": failed}))
