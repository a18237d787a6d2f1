"""Finishes its main code but leaves a non-daemon thread running (30 s)."""

import threading
import time

threading.Thread(target=time.sleep, args=(30,)).start()
print("main code done", flush=True)
