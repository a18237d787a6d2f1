"""A completion that searches its parent's memory for the hidden test's expected answer.

The tests expect a random ``SECRET-<32 hex>`` string that appears nowhere but in the hidden test.
"""

import os
import re


def f(x):
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/maps") as maps, open(f"/proc/{parent}/mem", "rb", 0) as mem:
            for line in maps.read().splitlines():
                span, perms = line.split()[:2]
                start, end = (int(part, 16) for part in span.split("-"))
                if "r" not in perms or end - start > 64 << 20:
                    continue
                try:
                    mem.seek(start)
                    found = re.search(rb"SECRET-[0-9a-f]{32}", mem.read(end - start))
                except (OSError, OverflowError, ValueError):
                    continue
                if found:
                    return found.group().decode()
    except OSError:
        pass
    return "not found"
