"""One job in one slot at one level: build the launch, feed the runner, clean up, read the verdict.

A job travels as marshal frames on the runner's job pipe: the setup and the untrusted source first;
then, in the modes that check a solution, the tests (read by the runner only after the solution's
process exists); then this run's nonce, which the runner reads only once nothing untrusted is alive.
"""

from __future__ import annotations

import marshal
import os
import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

from valueagent.sandbox.execute import Raw, execute
from valueagent.sandbox.launch import plan, runner_code
from valueagent.sandbox.results import IsolationLevel
from valueagent.sandbox.slots import Slot, kill_uid, remove_files_of

DEADLINE_MARGIN_S = 2.0
NPROC = 48
NOFILE = 256


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run (per process, except ``disk_mb`` for the work dir)."""

    timeout: float
    memory_mb: int
    output_limit: int
    disk_mb: int = 64

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        if self.memory_mb < 64:
            raise ValueError(f"memory_mb must be at least 64 (the interpreter needs it), got {self.memory_mb}")
        if self.output_limit < 0 or self.disk_mb < 1:
            raise ValueError("output_limit must be >= 0 and disk_mb >= 1")


@dataclass(frozen=True)
class Job:
    """``mode`` is run|score|cases; ``fields`` go to the runner first, ``later`` after the fork."""

    mode: str
    fields: dict[str, Any]
    later: Any = None
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """The trusted runner's word, or why there is none.

    ``outcome`` is set only when exactly one final event arrived and it carried this run's nonce;
    ``tampered`` when a final event had a wrong nonce or there were several.
    """

    raw: Raw
    outcome: dict[str, Any] | None
    cases: list[dict[str, Any]]
    started: bool
    internal_error: str | None
    tampered: bool = False


def run_job(
    job: Job,
    limits: Limits,
    *,
    level: IsolationLevel,
    slot: Slot,
    python: str,
    cancel: threading.Event | None = None,
    deadline_s: float | None = None,
) -> Verdict:
    """Run ``job`` once; never raises for anything the program does."""
    launch = plan(level, uid=slot.uid, python=python, disk_bytes=limits.disk_mb << 20)
    setup = dict(launch.setup)
    workdir = None
    if launch.host_workdir:
        workdir = tempfile.mkdtemp(prefix="valueagent-sbx-")
        if slot.uid is not None:
            os.chown(workdir, slot.uid, slot.uid)
        setup["workdir"] = workdir
    nonce = secrets.token_hex(16)
    timeout = limits.timeout
    cpu = int(deadline_s or timeout) + 1
    setup["limits"] = {
        "RLIMIT_AS": limits.memory_mb << 20,
        "RLIMIT_CPU": (cpu, cpu + 1),
        "RLIMIT_FSIZE": limits.disk_mb << 20,
        "RLIMIT_NOFILE": NOFILE,
        "RLIMIT_CORE": 0,
        **({"RLIMIT_NPROC": NPROC} if setup["kill_all"] else {}),
    }
    first = {**setup, **job.fields, "mode": job.mode, "timeout": timeout, "files": sorted(job.files.items())}
    frames = [runner_code(python), marshal.dumps(first)]
    if job.later is not None:
        frames.append(marshal.dumps(job.later))
    frames.append(nonce.encode())
    payload = b"".join(len(frame).to_bytes(4, "big") + frame for frame in frames)

    argv = launch.argv
    oom_before = 0
    if slot.cgroup is not None:
        oom_before = slot.cgroup.prepare((limits.memory_mb + limits.disk_mb) << 20, NPROC)
        argv = slot.cgroup.wrap(argv)

    def after_exit(pid: int) -> None:
        # With a pid namespace (bwrap, unshare) nothing outlives the runner, which is its pid 1: the
        # kernel kills the rest when it exits. Without one, the slot's cgroup (or uid) is swept.
        if slot.cgroup is not None:
            slot.cgroup.kill_all(spare=pid)
        elif slot.uid is not None and level is IsolationLevel.UID:
            kill_uid(slot.uid)
        if slot.uid is not None and level is IsolationLevel.UID:
            remove_files_of(slot.uid)

    try:
        raw = execute(
            argv,
            launch.env,
            payload,
            deadline_s=(deadline_s or timeout) + DEADLINE_MARGIN_S,
            output_limit=limits.output_limit,
            cancel=cancel,
            after_exit=after_exit,
        )
        if slot.cgroup is not None:
            raw.oom_killed = slot.cgroup.oom_kills() > oom_before
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    return _read_verdict(raw, nonce)


def _read_verdict(raw: Raw, nonce: str) -> Verdict:
    finals: list[dict[str, Any]] = []
    cases: list[dict[str, Any]] = []
    started, internal = False, None
    for event in raw.events:
        kind = event.get("event")
        if kind == "started":
            started = True
        elif kind == "case":
            cases.append(event)
        elif kind == "internal_error":
            internal = str(event.get("detail"))
        else:  # a final event, or something the runner never writes: both need the nonce
            finals.append(event)
    genuine = [event for event in finals if secrets.compare_digest(str(event.get("nonce")), nonce)]
    # The runner writes one final event or one internal error, never both, never more.
    tampered = (
        len(finals) > 1 or len(genuine) != len(finals) or (bool(finals) and internal is not None)
    ) or raw.verdict_overflow
    outcome = genuine[0].get("outcome") if genuine and not tampered else None
    return Verdict(raw, outcome if isinstance(outcome, dict) else None, cases, started, internal, tampered)
