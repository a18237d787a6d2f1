"""The adversarial suite: every program in tests/adversarial/ at every isolation level available here.

Each scenario states, from the host's side, what containment means for it. A weaker level that cannot
contain a scenario is a strict xfail with the reason, so the table in docs/sandbox.md is checked: a
level that starts (or stops) containing something makes the suite fail until the table is updated.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from valueagent.sandbox import ExecResult, IsolationLevel, Sandbox, cgroups, probe
from valueagent.sandbox.slots import processes_of

PROGRAMS = Path(__file__).parent / "adversarial"
BWRAP, UNSHARE, UID, RLIMITS = (
    IsolationLevel.BWRAP,
    IsolationLevel.UNSHARE,
    IsolationLevel.UID,
    IsolationLevel.RLIMITS,
)
LEVELS = [level for level in sorted(IsolationLevel, reverse=True) if probe(level).available]
CGROUPS = cgroups.available()  # a per-run cap on total memory and tasks (root + a writable hierarchy)
AS_ROOT = os.geteuid() == 0  # then the rlimits level runs programs as root, with CAP_SYS_PTRACE
TASK_PROMPT = 'def f(x):\n    """Return twice x."""\n'
TASK_TEST = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-1) == -2\n"


class Host:
    """What a scenario may try to reach on the host, and what the test observes afterwards."""

    def __init__(self) -> None:
        self.token = f"{secrets.randbelow(10**9):09d}"
        self.shared_dir = Path(tempfile.mkdtemp(prefix="va-adversarial-"))
        self.shared_dir.chmod(0o777)  # world-writable, like a careless shared directory
        self.victim = self.shared_dir / "victim.txt"
        self.victim.write_text("keep me")
        secret_dir = Path("/root") if os.geteuid() == 0 else Path(tempfile.mkdtemp())
        self.secret_file = secret_dir / f".valueagent-sandbox-secret-{self.token}"
        self.secret_file.write_text(f"SECRET-{self.token}")
        self.secret_file.chmod(0o600)
        self.received: list[bytes] = []
        self.usr1 = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._old_usr1 = signal.signal(signal.SIGUSR1, self._on_usr1)

    @property
    def params(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "shared_dir": str(self.shared_dir),
            "victim": str(self.victim),
            "secret_file": str(self.secret_file),
            "port": self._server.getsockname()[1],
            "host_pid": os.getpid(),
            "kill_parent": True,
        }

    def _on_usr1(self, signum: int, frame: object) -> None:
        self.usr1 += 1

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(conn.recv(1024))
                except OSError:
                    pass

    def escaped_files(self) -> list[str]:
        name = f"escaped-{self.token}"
        places = [self.shared_dir, Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path("/root")]
        return [str(place / name) for place in places if (place / name).exists()]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._server.close()
        signal.signal(signal.SIGUSR1, self._old_usr1)
        for path in self.escaped_files():
            os.remove(path)
        shutil.rmtree(self.shared_dir, ignore_errors=True)
        self.secret_file.unlink(missing_ok=True)


@dataclass(frozen=True)
class Scenario:
    """``check`` returns None when contained, else what escaped; ``weak`` maps levels that cannot
    contain it to the reason."""

    name: str
    check: Callable[[ExecResult, Host], str | None]
    kind: str = "run"
    limits: Mapping[str, float] = field(default_factory=dict)
    weak: Mapping[IsolationLevel, str] = field(default_factory=dict)

    def execute(self, sandbox: Sandbox, host: Host) -> ExecResult:
        source = (PROGRAMS / f"{self.name}.py").read_text()
        if self.kind == "score":
            return sandbox.score_humaneval(TASK_PROMPT, source, TASK_TEST, "f", **self.limits)  # type: ignore[arg-type]
        if self.kind == "steal":
            test = f"def check(candidate):\n    assert candidate(1) == 'SECRET-{secrets.token_hex(16)}'\n"
            return sandbox.score_humaneval(TASK_PROMPT, source, test, "f", **self.limits)  # type: ignore[arg-type]
        files = {"params.json": json.dumps(host.params), "_params.py": (PROGRAMS / "_params.py").read_text()}
        return sandbox.run(source, files=files, **self.limits)  # type: ignore[arg-type]


def _status(*allowed: str) -> Callable[[ExecResult, Host], str | None]:
    def check(result: ExecResult, host: Host) -> str | None:
        return None if result.status in allowed else f"status {result.status!r} ({result.detail})"

    return check


def _not_passed(result: ExecResult, host: Host) -> str | None:
    return "reported as passed" if result.status == "passed" else None


def _report(result: ExecResult) -> dict[str, Any]:
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


def _fork_bomb(result: ExecResult, host: Host) -> str | None:
    made = _report(result).get("made", 0)
    return f"{made} processes forked" if made >= 100 else None


def _disk_bomb(result: ExecResult, host: Host) -> str | None:
    written = _report(result).get("written_mib", 0)
    return f"{written} MiB written with a 16 MiB disk limit" if written > 17 else None


def _huge_output(result: ExecResult, host: Host) -> str | None:
    size = len(result.stdout) + len(result.stderr)
    return None if result.status == "output_limit" and size <= 65536 else f"{result.status}, {size} bytes back"


def _escape(result: ExecResult, host: Host) -> str | None:
    escaped = host.escaped_files() + ([] if host.victim.exists() else [f"deleted {host.victim}"])
    return ", ".join(escaped) or None


def _network(result: ExecResult, host: Host) -> str | None:
    return f"the host's loopback server received {host.received}" if host.received else None


def _kill_parent(result: ExecResult, host: Host) -> str | None:
    if host.usr1:
        return "the test process received SIGUSR1"
    return _not_passed(result, host)


def _secrets(result: ExecResult, host: Host) -> str | None:
    leaked = f"SECRET-{host.token}" in result.stdout + result.stderr
    return "the secret file was read" if leaked else None


def _segfault(result: ExecResult, host: Host) -> str | None:
    return None if (result.status, result.returncode) == ("failed", -11) else f"{result.status} {result.returncode}"


def _stopped_by_the_timeout(result: ExecResult, host: Host) -> str | None:
    """The program runs for 30 s and then prints its end: a timeout of 0.5 s must stop it first
    (by what it printed, not by how long the run took)."""
    if result.status != "timeout":
        return f"status {result.status!r}"
    return "it ran to its own end: the timeout did not stop it" if "reached its own end" in result.stdout else None


ROOT = "runs as the calling user (root): "
HOST_FS = "no mount namespace: "
NO_CGROUP = "no cgroup here: "
EVERY_LEVEL = tuple(IsolationLevel)
SCENARIOS = [
    Scenario("infinite_loop", _stopped_by_the_timeout, limits={"timeout": 0.5}),
    Scenario("sigterm_ignoring_loop", _stopped_by_the_timeout, limits={"timeout": 0.5}),
    Scenario(
        "fork_bomb",
        _fork_bomb,
        limits={"timeout": 10},
        weak={} if CGROUPS else {RLIMITS: NO_CGROUP + ROOT + "RLIMIT_NPROC does not apply to root"},
    ),
    Scenario("memory_bomb", _status("memory"), limits={"memory_mb": 256}),
    Scenario(
        "fork_memory_bomb",
        _status("memory"),
        limits={"memory_mb": 256, "timeout": 10},
        weak={} if CGROUPS else dict.fromkeys(EVERY_LEVEL, NO_CGROUP + "memory_mb caps each process"),
    ),
    Scenario(
        "disk_bomb",
        _disk_bomb,
        limits={"disk_mb": 16, "timeout": 20},
        weak={
            UID: HOST_FS + "the work dir is on the host disk; RLIMIT_FSIZE caps each file, not the total",
            RLIMITS: HOST_FS + "the work dir is on the host disk; RLIMIT_FSIZE caps each file, not the total",
        },
    ),
    Scenario("huge_output", _huge_output, limits={"output_limit": 65536}),
    Scenario(
        "escape_filesystem",
        _escape,
        weak={
            UID: HOST_FS + "a dedicated uid can still write world-writable host directories",
            RLIMITS: ROOT + "it can write and delete anything",
        },
    ),
    Scenario(
        "network",
        _network,
        weak={
            UID: "no network namespace: host services on loopback are reachable",
            RLIMITS: "no network namespace: host services on loopback are reachable",
        },
    ),
    Scenario("kill_parent", _kill_parent, weak={RLIMITS: ROOT + "its signals reach the test process"}),
    Scenario("setsid_daemon", _status("passed")),
    Scenario("read_secrets", _secrets, weak={RLIMITS: ROOT + "it can read root's files"}),
    Scenario("early_exit_sys", _status("failed")),
    Scenario("early_exit_os", _status("failed")),
    Scenario("early_exit_atexit", _status("failed")),
    Scenario("lingering_thread", _stopped_by_the_timeout, limits={"timeout": 0.5}),
    Scenario("segfault", _segfault),
    Scenario("forged_verdict", _not_passed),
    Scenario(
        "forge_via_proc",
        _not_passed,
        weak={RLIMITS: ROOT + "it can open the runner's descriptors through /proc and steal the nonce"}
        if AS_ROOT
        else {},
    ),
    Scenario("solution_always_equal", _status("failed"), kind="score"),
    Scenario("solution_patched_builtins", _status("failed"), kind="score"),
    Scenario("solution_early_exit", _status("failed"), kind="score"),
    Scenario("solution_exit_in_call", _status("failed"), kind="score"),
    Scenario("solution_forged_verdict", _status("failed"), kind="score"),
    Scenario("solution_kill_checker", _not_passed, kind="score"),
    Scenario(
        "solution_steal_tests",
        _status("failed"),
        kind="steal",
        weak={RLIMITS: ROOT + "it can read the checking process's memory"} if AS_ROOT else {},
    ),
]


def _params() -> list[Any]:
    params = []
    for scenario in SCENARIOS:
        for level in LEVELS:
            marks = []
            if level in scenario.weak:
                marks.append(pytest.mark.xfail(reason=scenario.weak[level], strict=True))
            params.append(pytest.param(scenario, level, marks=marks, id=f"{scenario.name}-{level.label}"))
    return params


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[dict[IsolationLevel, Sandbox]]:
    boxes = {level: Sandbox(workers=1, level=level) for level in LEVELS}
    yield boxes
    for box in boxes.values():
        box.close()


@pytest.fixture
def host() -> Iterator[Host]:
    observed = Host()
    yield observed
    observed.close()


def _leftovers(sandbox: Sandbox, host: Host) -> str | None:
    """The run's processes that still run, unkilled, once it has returned.

    Judged by each process's state, not by waiting a while: the sandbox has killed what it started
    when it returns, but the kernel may still be finishing a process off (SIGKILL pending, exiting)
    or about to (its pid namespace's init is dying, which takes the whole namespace with it), and how
    long that takes on a busy machine says nothing about containment."""
    found = _pids_with_token(host.token)
    found += [pid for slot in sandbox._pool.slots if slot.uid is not None for pid in processes_of(slot.uid)]
    running = [pid for pid in found if not _dying(pid)]
    return f"processes left behind: {running}" if running else None


PF_EXITING = 0x4  # include/linux/sched.h: the task has begun do_exit


def _dying(pid: int) -> bool:
    """Gone, a zombie, exiting, SIGKILL pending, or in a pid namespace whose init is one of those."""
    if _killed(pid):
        return True
    try:
        ns = os.readlink(f"/proc/{pid}/ns/pid")
    except FileNotFoundError:
        return True  # gone since
    except OSError:
        return False  # not ours to inspect: nothing says it is on its way out
    if ns == os.readlink("/proc/self/ns/pid"):
        return False
    inits = [p for p in _pids() if _in_ns(p, ns) and _ns_pid(p) == 1]
    return not inits or all(_killed(p) for p in inits)


def _killed(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as handle:
            status = dict(line.split(":", 1) for line in handle if ":" in line)
    except (OSError, IndexError):
        return True
    state, flags = fields[0], int(fields[6])
    pending = int(status.get("SigPnd", "0"), 16) | int(status.get("ShdPnd", "0"), 16)
    return state in ("Z", "X", "x") or bool(flags & PF_EXITING) or bool(pending >> (signal.SIGKILL - 1) & 1)


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _in_ns(pid: int, ns: str) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == ns
    except OSError:
        return False


def _ns_pid(pid: int) -> int | None:
    """The pid of ``pid`` inside its own (innermost) pid namespace."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _pids_with_token(token: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    if token.encode() in handle.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize(("scenario", "level"), _params())
def test_contained(
    scenario: Scenario, level: IsolationLevel, sandboxes: dict[IsolationLevel, Sandbox], host: Host
) -> None:
    sandbox = sandboxes[level]
    result = scenario.execute(sandbox, host)
    assert isinstance(result, ExecResult) and result.isolation == level.label
    escaped = scenario.check(result, host) or _leftovers(sandbox, host)
    assert escaped is None, f"{scenario.name} at {level.label}: {escaped}\n{result}"


def test_the_strongest_level_here_contains_everything() -> None:
    strongest = LEVELS[0] if LEVELS else None
    assert strongest is not None
    assert [s.name for s in SCENARIOS if strongest in s.weak] == []
