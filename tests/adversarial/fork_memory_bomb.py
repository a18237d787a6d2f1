"""Spreads an allocation over 8 processes so no single one is large (at most 8 x 192 MiB, 1 s)."""

import json
import os
import time

children = []
for _ in range(8):
    pid = os.fork()
    if pid == 0:
        try:
            blocks = [bytearray(64 << 20) for _ in range(3)]
            time.sleep(1)
        finally:
            os._exit(0)
    children.append(pid)
time.sleep(0.5)
alive = sum(1 for pid in children if os.waitpid(pid, os.WNOHANG) == (0, 0))
print(json.dumps({"children_holding_memory": alive}))
for pid in children:
    os.waitpid(pid, 0)
