"""Writes files outside its work dir and deletes one it does not own (paths come from the test)."""

import json
import os

from _params import load

params = load()
token = params.get("token", "by-hand")
results = {}
targets = {"tmp": "/tmp", "var_tmp": "/var/tmp", "dev_shm": "/dev/shm", "root_home": "/root"}
if "shared_dir" in params:
    targets["shared_dir"] = params["shared_dir"]
for name, directory in targets.items():
    try:
        with open(os.path.join(directory, f"escaped-{token}"), "w") as handle:
            handle.write(token)
        results[name] = "written"
    except OSError as exc:
        results[name] = exc.strerror
if "victim" in params:
    try:
        os.remove(params["victim"])
        results["victim"] = "deleted"
    except OSError as exc:
        results["victim"] = exc.strerror
print(json.dumps(results))
