"""A busy loop that never finishes on its own (stops after 30 s, so it is harmless by hand)."""

import time

end = time.monotonic() + 30
while time.monotonic() < end:
    pass
print("reached its own end")  # what the check looks for: a timeout must stop it before this
