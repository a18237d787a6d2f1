"""Fills the disk: 48 files of 1 MiB and one file of 32 MiB, then removes them (80 MiB bound)."""

import json
import os

chunk = b"x" * (1 << 20)
written, errors = 0, set()
names = [f"fill-{i}.bin" for i in range(48)] + ["big.bin"]
try:
    for name in names:
        try:
            with open(name, "wb", buffering=0) as handle:
                for _ in range(32 if name == "big.bin" else 1):
                    handle.write(chunk)
                    written += len(chunk)
        except OSError as exc:
            errors.add(exc.strerror)
finally:
    print(json.dumps({"written_mib": written >> 20, "errors": sorted(errors)}))
    for name in names:
        if os.path.exists(name):
            os.remove(name)
