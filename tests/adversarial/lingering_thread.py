"""Finishes its main code but leaves a non-daemon thread running (30 s)."""

import threading
import time


def linger() -> None:
    time.sleep(30)
    print("reached its own end", flush=True)  # what the check looks for: a timeout must stop it before this


threading.Thread(target=linger).start()
print("main code done", flush=True)
