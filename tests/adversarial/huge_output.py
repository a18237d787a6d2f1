"""Writes 64 MiB to stdout as fast as it can."""

import os

block = b"y" * 65536
for _ in range(1024):
    os.write(1, block)
