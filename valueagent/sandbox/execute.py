"""Driving one launched runner: feed its job, collect capped output and verdict events, enforce a deadline.

The loop polls the runner's stdout, stderr, verdict pipe, job pipe and a pidfd, so one thread serves
one run with no helper threads, and a run that ignores its deadline or floods its output is killed
from outside. ``after_exit(pid)`` runs once the launched process has exited (or was killed), before
it is reaped and before the pipes are drained, so that leftovers holding the pipes open die first.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Stopped = Literal["deadline", "output_limit", "cancelled"]
VERDICT_LIMIT = 64 << 20
DRAIN_GRACE_S = 1.0
_CHUNK = 1 << 16


@dataclass
class Raw:
    """What came out of one launch, before it is read as an ExecResult."""

    events: list[dict[str, Any]] = field(default_factory=list)
    stdout: bytes = b""
    stderr: bytes = b""
    exit_status: int | None = None
    duration_s: float = 0.0
    stopped: Stopped | None = None
    output_truncated: bool = False
    spawn_error: str | None = None
    oom_killed: bool = False
    verdict_overflow: bool = False


def execute(
    argv: Sequence[str],
    env: dict[str, str],
    payload: bytes,
    *,
    deadline_s: float,
    output_limit: int,
    cancel: threading.Event | None = None,
    after_exit: Callable[[int], None] = lambda pid: None,
) -> Raw:
    """Launch ``argv`` + the runner's two fd numbers, write ``payload`` to its job pipe, collect results."""
    ctl_r, ctl_w = os.pipe()
    ver_r, ver_w = os.pipe()
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [*argv, str(ctl_r), str(ver_w)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(ctl_r, ver_w),
            start_new_session=True,
            env=env,
            cwd="/",
        )
    except OSError as exc:
        for fd in (ctl_r, ctl_w, ver_r, ver_w):
            os.close(fd)
        return Raw(spawn_error=f"could not start {argv[0]}: {exc}")
    os.close(ctl_r)
    os.close(ver_w)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        return _drive(proc, ctl_w, ver_r, payload, started, deadline_s, output_limit, cancel, after_exit)
    finally:
        for stream in (proc.stdout, proc.stderr):
            stream.close()


def _drive(
    proc: subprocess.Popen[bytes],
    ctl_w: int,
    ver_r: int,
    payload: bytes,
    started: float,
    deadline_s: float,
    output_limit: int,
    cancel: threading.Event | None,
    after_exit: Callable[[int], None],
) -> Raw:
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    pidfd = os.pidfd_open(proc.pid)
    os.set_blocking(ctl_w, False)
    buffers: dict[int, bytearray] = {out_fd: bytearray(), err_fd: bytearray(), ver_r: bytearray()}
    poller = select.poll()
    for fd in (out_fd, err_fd, ver_r, pidfd):
        poller.register(fd, select.POLLIN)
    poller.register(ctl_w, select.POLLOUT)
    open_fds = {out_fd, err_fd, ver_r, pidfd, ctl_w}
    pending = memoryview(payload)
    raw = Raw()
    deadline = started + deadline_s
    drain_until: float | None = None  # set once the launched process has exited
    killed = False
    try:
        while True:
            now = time.monotonic()
            if drain_until is None and not killed:
                if cancel is not None and cancel.is_set():
                    raw.stopped = "cancelled"
                elif now >= deadline:
                    raw.stopped = "deadline"
                if raw.stopped is not None:
                    _kill(proc.pid)
                    killed = True
            if drain_until is not None and (not open_fds & {out_fd, err_fd, ver_r} or now >= drain_until):
                break
            if drain_until is not None:
                wait = drain_until - now
            elif killed or cancel is not None:
                wait = 0.05 if killed else min(0.05, deadline - now)
            else:
                wait = deadline - now
            for fd, event in poller.poll(max(0.0, wait) * 1000):
                if fd == ctl_w:
                    if event & (select.POLLERR | select.POLLHUP):
                        pending = pending[:0]
                    else:
                        try:
                            pending = pending[os.write(ctl_w, pending[:_CHUNK]) :]
                        except BlockingIOError:
                            pass
                        except BrokenPipeError:
                            pending = pending[:0]
                    if not pending:
                        _forget(poller, open_fds, ctl_w)
                        _close(ctl_w)
                elif fd == pidfd:
                    _forget(poller, open_fds, pidfd)
                    _kill_group(proc.pid)
                    after_exit(proc.pid)
                    drain_until = time.monotonic() + DRAIN_GRACE_S
                else:
                    chunk = os.read(fd, _CHUNK)
                    if not chunk:
                        _forget(poller, open_fds, fd)
                        continue
                    buffers[fd] += chunk
                    if fd == ver_r:
                        if len(buffers[fd]) > VERDICT_LIMIT:  # not the runner: something forged it
                            raw.verdict_overflow = True
                            _forget(poller, open_fds, ver_r)
                            if drain_until is None and not killed:
                                _kill(proc.pid)
                                killed = True
                    elif len(buffers[out_fd]) + len(buffers[err_fd]) > output_limit:
                        raw.output_truncated = True
                        _forget(poller, open_fds, out_fd)
                        _forget(poller, open_fds, err_fd)
                        if drain_until is None and not killed:
                            raw.stopped = "output_limit"
                            _kill(proc.pid)
                            killed = True
    finally:
        if drain_until is None:
            _kill(proc.pid)
            after_exit(proc.pid)
        raw.exit_status = proc.wait()
        for fd in (pidfd, ver_r, ctl_w):
            if fd != ctl_w or ctl_w in open_fds:
                _close(fd)
    raw.duration_s = time.monotonic() - started
    raw.stdout, raw.stderr = _cap(buffers[out_fd], buffers[err_fd], output_limit)
    raw.events = [_event(line) for line in bytes(buffers[ver_r]).splitlines() if line.strip()]
    return raw


def _event(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    return event if isinstance(event, dict) else {"event": "malformed"}


def _forget(poller: select.poll, open_fds: set[int], fd: int) -> None:
    if fd in open_fds:
        poller.unregister(fd)
        open_fds.discard(fd)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _cap(out: bytearray, err: bytearray, limit: int) -> tuple[bytes, bytes]:
    out_b = bytes(out[:limit])
    return out_b, bytes(err[: max(0, limit - len(out_b))])


def _kill_group(pid: int) -> None:
    # Safe against pid reuse: the launched process is a zombie we have not reaped, so its pgid is ours.
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill(pid: int) -> None:
    """Kill ``pid``, its process group and every descendant (the descendants first)."""
    for victim in [*descendants(pid), pid]:
        try:
            os.kill(victim, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _kill_group(pid)


def descendants(root: int) -> list[int]:
    """Pids below ``root`` in the process tree, from a scan of ``/proc``."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
            parents[int(name)] = int(stat[stat.rindex(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found
