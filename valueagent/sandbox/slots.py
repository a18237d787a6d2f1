"""Worker slots: one dedicated unprivileged uid per slot, reserved across processes, cleaned after each run.

A uid is used by one run at a time, so after a run every process of that uid can be killed and every
file it left in a shared temporary directory removed without touching anything else. Reservations
are ``flock`` locks on files under ``/run/valueagent-sandbox``, so two pools (in one process or in
two) never share a uid; a lock is released when the pool closes or its process dies.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import queue
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from valueagent.sandbox import cgroups
from valueagent.sandbox.cgroups import Cgroup

FIRST_UID = 61000
UID_RANGE = 4000
LOCK_DIR = "/run/valueagent-sandbox"
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/run/shm")


@dataclass(frozen=True)
class Slot:
    """One worker slot. ``uid`` is dedicated to it, or None when we are not root (no uid switching);
    ``cgroup`` caps the memory and tasks of its runs where this machine allows one."""

    index: int
    uid: int | None
    cgroup: Cgroup | None = None


class SlotPool:
    """``size`` slots; ``slot()`` lends one, waiting until one is free. Thread-safe."""

    def __init__(self, size: int, *, dedicated: bool | None = None) -> None:
        if size < 1:
            raise ValueError(f"a sandbox needs at least one worker slot, got {size}")
        self._closed = threading.Event()
        self._lock_fds: list[int] = []
        self.slots: tuple[Slot, ...] = ()
        uids: list[int | None] = [None] * size
        if os.geteuid() == 0 if dedicated is None else dedicated:
            try:
                uids = list(self._reserve(size))
            except BaseException:
                self.close()
                raise
        self.slots = tuple(
            Slot(index, uid, cgroups.create(f"slot-{uid}") if uid is not None else None)
            for index, uid in enumerate(uids)
        )
        self._free: queue.SimpleQueue[Slot] = queue.SimpleQueue()
        for slot in self.slots:
            self._free.put(slot)

    @contextmanager
    def slot(self) -> Iterator[Slot]:
        if self._closed.is_set():
            raise RuntimeError("this sandbox is closed; create a new Sandbox")
        slot = self._free.get()
        try:
            yield slot
        finally:
            self._free.put(slot)

    def close(self) -> None:
        """Remove the slots' cgroups and release their uids. Idempotent."""
        self._closed.set()
        for slot in self.slots:
            if slot.cgroup is not None:
                slot.cgroup.remove()
        for fd in self._lock_fds:
            os.close(fd)
        self._lock_fds.clear()

    def _reserve(self, size: int) -> Iterator[int]:
        os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
        found = 0
        for uid in range(FIRST_UID, FIRST_UID + UID_RANGE):
            if found == size:
                return
            if _uid_exists(uid):
                continue
            fd = os.open(f"{LOCK_DIR}/uid-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._lock_fds.append(fd)
            kill_uid(uid)  # whatever a crashed earlier owner left behind
            found += 1
            yield uid
        raise RuntimeError(f"no free sandbox uid in {FIRST_UID}..{FIRST_UID + UID_RANGE - 1}; close unused Sandboxes")


def _uid_exists(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def processes_of(uid: int) -> list[int]:
    """Live (not zombie) pids whose real, effective or saved uid is ``uid``."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and _has_uid(int(name), uid)]


def _has_uid(pid: int, uid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"State:") and line.split()[1] in (b"Z", b"X"):
                    return False  # a zombie does nothing; the launched process is one until reaped
                if line.startswith(b"Uid:"):
                    return str(uid).encode() in line.split()[1:4]
    except (OSError, IndexError):
        pass
    return False


def kill_uid(uid: int) -> int:
    """SIGKILL every process of ``uid`` until none is left; -> how many were found."""
    total = 0
    for attempt in range(200):
        pids = processes_of(uid)
        if not pids:
            return total
        total += len(pids)
        for pid in pids:
            _kill_if_uid(pid, uid)
        time.sleep(0.001 * min(attempt + 1, 20))
    raise RuntimeError(f"processes of sandbox uid {uid} survive SIGKILL: {processes_of(uid)}")


def _kill_if_uid(pid: int, uid: int) -> None:
    # A pidfd pins the process: re-checking the uid after opening it rules out a recycled pid.
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if _has_uid(pid, uid):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(pidfd)


def remove_files_of(uid: int) -> None:
    """Remove what ``uid`` left at the top of the shared temporary directories (the uid level has no
    private ``/tmp``); entries owned by anyone else are left alone."""
    for directory in SHARED_TMP:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                continue
