"""Reads what it should not: a root-only file, the test process's environment, its own environment."""

import json
import os

from _params import load

params = load()
paths = {"shadow": "/etc/shadow"}
if "secret_file" in params:
    paths["secret_file"] = params["secret_file"]
if "host_pid" in params:
    paths["host_environ"] = f"/proc/{params['host_pid']}/environ"
results = {}
for name, path in paths.items():
    try:
        with open(path, "rb") as handle:
            results[name] = handle.read(4096).decode("latin-1")
    except OSError as exc:
        results[name] = "denied: " + exc.strerror
results["own_environ"] = dict(os.environ)
print(json.dumps(results))
