"""Which isolation level works here, found by running a probe program at each level.

A level counts as available only when the probe ran through the real launch path, produced a
verdict carrying its nonce, and reported the facts the level promises (a dedicated non-root uid, no
network interface but loopback, its own pid space, no view of ``/root``). Results are cached per
interpreter for the life of the process.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

from valueagent.sandbox.core import Job, Limits, run_job
from valueagent.sandbox.launch import SYSTEM_PYTHON, runner_code
from valueagent.sandbox.results import IsolationLevel
from valueagent.sandbox.slots import Slot, SlotPool

PROBE = r"""
import json, os, socket

def attempt(action):
    try:
        action()
        return True
    except OSError:
        return False

facts = {
    "uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups(),
    "ifaces": sorted(name for _, name in socket.if_nameindex()),
    "procs": sum(1 for name in os.listdir("/proc") if name.isdigit()),
    "root_visible": attempt(lambda: os.listdir("/root")),
    "rootfs_readonly": bool(os.statvfs("/").f_flag & os.ST_RDONLY),
    "cwd_writable": attempt(lambda: open("probe.txt", "w").write("x")),
}
print(json.dumps(facts))
"""
_PREREQUISITES = {
    IsolationLevel.BWRAP: ("bwrap",),
    IsolationLevel.UNSHARE: ("unshare",),
    IsolationLevel.UID: (),
    IsolationLevel.RLIMITS: (),
}
_lock = threading.Lock()


@dataclass(frozen=True)
class LevelReport:
    """Whether ``level`` works here, and why (or why not)."""

    level: IsolationLevel
    available: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level.label, "available": self.available, "reason": self.reason}


def probe(level: IsolationLevel, *, python: str = SYSTEM_PYTHON, slot: Slot | None = None) -> LevelReport:
    """Run the probe program at ``level``; cached per (level, interpreter) when no slot is given."""
    if slot is not None:
        return _probe(level, python, slot)
    return _cached_probe(level, python)


@functools.cache
def _cached_probe(level: IsolationLevel, python: str) -> LevelReport:
    with _lock:
        pool = SlotPool(1)
        try:
            with pool.slot() as slot:
                return _probe(level, python, slot)
        finally:
            pool.close()


def detect(*, python: str = SYSTEM_PYTHON, at_least: IsolationLevel | None = None) -> list[LevelReport]:
    """Probe from the strongest level down, stopping at the first that works (or below ``at_least``)."""
    reports = []
    for level in sorted(IsolationLevel, reverse=True):
        if at_least is not None and level < at_least:
            break
        report = probe(level, python=python)
        reports.append(report)
        if report.available:
            break
    return reports


def _probe(level: IsolationLevel, python: str, slot: Slot) -> LevelReport:
    missing = [tool for tool in _PREREQUISITES[level] if shutil.which(tool) is None]
    if level is IsolationLevel.BWRAP and slot.uid is not None and shutil.which("setpriv") is None:
        missing.append("setpriv")
    if missing:
        hint = " (apt-get install -y bubblewrap)" if "bwrap" in missing else ""
        return LevelReport(level, False, f"{', '.join(missing)} not found{hint}")
    if level in (IsolationLevel.UNSHARE, IsolationLevel.UID) and slot.uid is None:
        return LevelReport(level, False, "needs root, to switch to a dedicated unprivileged uid")
    if not os.access(python, os.X_OK):
        return LevelReport(level, False, f"interpreter {python} not found or not executable")
    try:
        runner_code(python)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return LevelReport(level, False, f"interpreter {python} is unusable: {exc}")
    verdict = run_job(
        Job("run", {"source": PROBE}, files={"main.py": PROBE.encode()}),
        Limits(timeout=10.0, memory_mb=256, output_limit=1 << 16),
        level=level,
        slot=slot,
        python=python,
    )
    if verdict.outcome is None or verdict.outcome.get("report") != "done":
        why = verdict.internal_error or verdict.raw.spawn_error or _tail(verdict.raw.stderr) or "no verdict"
        return LevelReport(level, False, f"probe failed: {why}")
    try:
        facts = json.loads(verdict.raw.stdout)
    except ValueError:
        return LevelReport(level, False, f"probe printed no facts: {_tail(verdict.raw.stdout)}")
    problems = _problems(level, facts, slot)
    if problems:
        return LevelReport(level, False, "probe ran but " + "; ".join(problems))
    return LevelReport(level, True, _promise(level, facts))


def _problems(level: IsolationLevel, facts: dict[str, Any], slot: Slot) -> list[str]:
    problems = []
    if not facts["cwd_writable"]:
        problems.append("the work directory is not writable")
    if level >= IsolationLevel.UID:  # bwrap without root runs as the calling (non-root) user
        if facts["uid"] == 0 or facts["euid"] == 0:
            problems.append("the program runs as root")
        if slot.uid is not None and (facts["uid"], facts["euid"]) != (slot.uid, slot.uid):
            problems.append(f"the program runs as uid {facts['uid']}, not the slot's {slot.uid}")
    if level >= IsolationLevel.UNSHARE:
        if facts["ifaces"] != ["lo"]:
            problems.append(f"network interfaces visible: {facts['ifaces']}")
        if facts["procs"] > 8:
            problems.append(f"{facts['procs']} processes visible (no pid namespace)")
        if facts["root_visible"]:
            problems.append("/root is readable")
        if not facts["rootfs_readonly"]:
            problems.append("/ is writable")
    return problems


def _promise(level: IsolationLevel, facts: dict[str, Any]) -> str:
    who = f"uid {facts['uid']}"
    return {
        IsolationLevel.BWRAP: f"bubblewrap as {who}: all namespaces, no network, read-only /usr only, tmpfs work dir",
        IsolationLevel.UNSHARE: f"namespaces via unshare, then {who}: no network, read-only /, private /tmp",
        IsolationLevel.UID: f"dedicated {who} and rlimits; shares the host's network and filesystem view",
        IsolationLevel.RLIMITS: f"rlimits only, as {who}: no isolation from the host",
    }[level]


def _tail(data: bytes, size: int = 300) -> str:
    return data.decode("utf-8", "replace").strip()[-size:]
