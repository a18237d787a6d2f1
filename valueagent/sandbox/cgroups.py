"""Per-slot cgroups: one memory and process-count cap over every process of a run, when root can have one.

Resource limits are per process: a program that forks 40 children can hold 40 times ``memory_mb``.
A cgroup caps the sum (tmpfs pages written to the work dir included) and the number of tasks, for
root-owned processes too, and lists every process of the run however it detached. This layer is
optional: it needs root and a writable cgroup v1 (memory + pids) or v2 hierarchy; without one the
rlimits still apply. Each slot's cgroup is named after its dedicated uid and removed on close.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "valueagent-sandbox"
OVERHEAD_BYTES = 96 << 20  # bubblewrap, the runner and the interpreter itself
EXTRA_TASKS = 16
# Join the cgroup before anything else runs, so no process of the run is ever outside it.
_JOIN = 'for procs in "$@"; do case "$procs" in --) shift; break;; esac; echo $$ > "$procs"; shift; done; exec "$@"'


@dataclass(frozen=True)
class Cgroup:
    """The cgroup(s) of one slot: ``memory`` and ``pids`` are the same directory on cgroup v2."""

    memory: Path
    pids: Path
    version: int

    def wrap(self, argv: tuple[str, ...]) -> tuple[str, ...]:
        """``argv`` started inside this cgroup (a shell joins it, then execs ``argv``)."""
        procs = {str(self.memory / "cgroup.procs"), str(self.pids / "cgroup.procs")}
        return ("/bin/sh", "-c", _JOIN, "sh", *sorted(procs), "--", *argv)

    def prepare(self, memory_bytes: int, tasks: int) -> int:
        """Set the caps for the next run; -> the OOM-kill count so far (compare after the run)."""
        limit = memory_bytes + OVERHEAD_BYTES
        if self.version == 1:
            _write(self.memory / "memory.limit_in_bytes", limit, self.memory / "memory.memsw.limit_in_bytes")
            _write(self.pids / "pids.max", tasks + EXTRA_TASKS)
        else:
            _write(self.memory / "memory.max", limit)
            _write(self.memory / "memory.swap.max", 0, optional=True)
            _write(self.pids / "pids.max", tasks + EXTRA_TASKS)
        return self.oom_kills()

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in (self.memory / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            pass
        return 0

    def pids_inside(self) -> list[int]:
        found: set[int] = set()
        for directory in {self.memory, self.pids}:
            try:
                found.update(int(pid) for pid in (directory / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                continue
        return sorted(found)

    def kill_all(self, *, spare: int | None = None) -> None:
        """SIGKILL every process in the cgroup (except ``spare``, the zombie we have yet to reap)."""
        for attempt in range(200):
            victims = [pid for pid in self.pids_inside() if pid != spare]
            if not victims:
                return
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.001 * min(attempt + 1, 20))

    def remove(self) -> None:
        self.kill_all()
        for directory in {self.memory, self.pids}:
            for _ in range(50):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy while the last killed processes are reaped
                    time.sleep(0.01)


def create(name: str) -> Cgroup | None:
    """A cgroup for one slot, or None when this machine (or user) cannot have one."""
    if os.geteuid() != 0:
        return None
    try:
        if (ROOT / "memory" / "cgroup.procs").exists() and (ROOT / "pids" / "cgroup.procs").exists():
            memory = _make(ROOT / "memory" / PARENT / name)
            pids = _make(ROOT / "pids" / PARENT / name)
            return Cgroup(memory, pids, 1)
        if "memory" in _controllers(ROOT) and "pids" in _controllers(ROOT):
            (ROOT / "cgroup.subtree_control").write_text("+memory +pids")
            parent = _make(ROOT / PARENT)
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
            group = _make(parent / name)
            return Cgroup(group, group, 2) if (group / "memory.max").exists() else None
    except OSError:
        return None
    return None


def available() -> bool:
    """Whether slots get cgroups here (creates and removes a probe cgroup)."""
    return describe() is not None


def describe() -> str | None:
    """Which cgroup hierarchy slots get here, or None (creates and removes a probe cgroup)."""
    probe = create(f"probe-{os.getpid()}")
    if probe is None:
        return None
    probe.remove()
    return f"cgroup v{probe.version} under {probe.memory.parent}"


def _make(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _controllers(root: Path) -> list[str]:
    try:
        return (root / "cgroup.controllers").read_text().split()
    except OSError:
        return []


def _write(path: Path, value: int, paired: Path | None = None, *, optional: bool = False) -> None:
    """Write a limit; with ``paired`` (v1 memsw, which must stay >= the memory limit) in a working order."""
    try:
        if paired is None or not paired.exists():
            path.write_text(str(value))
            return
        try:
            path.write_text(str(value))
            paired.write_text(str(value))
        except OSError:  # raising: memsw first
            paired.write_text(str(value))
            path.write_text(str(value))
    except OSError:
        if not optional:
            raise
