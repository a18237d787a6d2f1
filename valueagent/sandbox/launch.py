"""How each isolation level starts the trusted runner: the command line and the runner's setup."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from typing import Any

from valueagent.sandbox.results import IsolationLevel

SYSTEM_PYTHON = "/usr/bin/python3"
BWRAP_WORKDIR = "/tmp"
UNSHARE_WORKDIR = "/tmp"
ENV_BASE = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
# The runner arrives precompiled as the first frame on its job pipe: compiling its source in every
# run would cost more than everything else the sandbox does. This bootstrap only loads and runs it.
BOOTSTRAP = """import marshal, os, sys
def take(fd, n):
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            os._exit(70)
        data += chunk
    return data
fd = int(sys.argv[1])
exec(marshal.loads(take(fd, int.from_bytes(take(fd, 4), "big"))))
"""
_COMPILE = "import marshal, sys; sys.stdout.buffer.write(marshal.dumps(compile(sys.stdin.read(), '<runner>', 'exec')))"


@functools.cache
def runner_source() -> str:
    """The runner's source as one script: ``_wire`` + ``_runner`` + ``_checker`` + the call to main."""
    package = resources.files("valueagent.sandbox")
    parts = [package.joinpath(name).read_text("utf-8") for name in ("_wire.py", "_runner.py", "_checker.py")]
    return "\n".join(parts) + "\nmain(sys.argv)\n"


@functools.cache
def runner_code(python: str) -> bytes:
    """The runner compiled by ``python`` itself (marshal is specific to the interpreter's version)."""
    done = subprocess.run(
        [python, "-I", "-S", "-c", _COMPILE], input=runner_source().encode(), capture_output=True, timeout=60
    )
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"{python} could not compile the sandbox runner: {done.stderr.decode()[-500:]}")
    return done.stdout


@dataclass(frozen=True)
class Launch:
    """Everything level-specific about one run.

    ``argv`` ends where the runner's two descriptor numbers go; ``setup`` is merged into the job the
    runner reads (privilege drop, mounts, whether ``kill(-1)`` is confined to this run);
    ``host_workdir`` asks the host to make (and remove) a work directory owned by ``uid``.
    """

    level: IsolationLevel
    argv: tuple[str, ...]
    env: dict[str, str]
    setup: dict[str, Any]
    host_workdir: bool


def plan(level: IsolationLevel, *, uid: int | None, python: str, disk_bytes: int) -> Launch:
    """The launch for ``level``; ``uid`` is the slot's dedicated uid (None when we are not root)."""
    runner = (python, "-I", "-S", "-B", "-c", BOOTSTRAP)
    if level is IsolationLevel.BWRAP:
        if uid is None and os.geteuid() == 0:
            raise ValueError("bubblewrap run as root is no sandbox; give the slot a dedicated uid")
        env = ENV_BASE | {"HOME": BWRAP_WORKDIR, "TMPDIR": BWRAP_WORKDIR}
        argv = _as_uid(uid) + _bwrap_args(python, disk_bytes, env) + runner
        return Launch(level, argv, dict(ENV_BASE), {"workdir": BWRAP_WORKDIR, "uid": None, "kill_all": True}, False)
    if level is IsolationLevel.UNSHARE:
        if uid is None:
            raise ValueError("the unshare level needs root to drop to a dedicated uid")
        unshare = (
            _which("unshare"),
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
        )
        env = ENV_BASE | {"HOME": UNSHARE_WORKDIR, "TMPDIR": UNSHARE_WORKDIR}
        setup = {"workdir": UNSHARE_WORKDIR, "uid": uid, "mounts": True, "disk_bytes": disk_bytes, "kill_all": True}
        return Launch(level, unshare + runner, env, setup, False)
    if level is IsolationLevel.UID:
        if uid is None:
            raise ValueError("the uid level needs root to drop to a dedicated uid")
        return Launch(level, runner, dict(ENV_BASE), {"uid": uid, "kill_all": True}, True)
    return Launch(level, runner, dict(ENV_BASE), {"uid": None, "kill_all": False}, True)


def _as_uid(uid: int | None) -> tuple[str, ...]:
    if uid is None:
        return ()
    # bubblewrap must never run as root: as root it is no sandbox (the code could remount / rw).
    return (_which("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all")


def _bwrap_args(python: str, disk_bytes: int, env: dict[str, str]) -> tuple[str, ...]:
    args = [
        _which("bwrap"),
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for link in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    prefix = _prefix_outside_usr(python)
    if prefix is not None:
        args += ["--ro-bind", prefix, prefix]
    args += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(disk_bytes),
        "--tmpfs",
        BWRAP_WORKDIR,
        "--size",
        str(1 << 20),
        "--tmpfs",
        "/dev/shm",
        # bwrap's own root and /dev are tmpfs without a size cap: make them read-only, last
        "--remount-ro",
        "/dev",
        "--remount-ro",
        "/",
        "--chdir",
        BWRAP_WORKDIR,
        "--clearenv",
    ]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return (*args, "--")


def _prefix_outside_usr(python: str) -> str | None:
    real = os.path.realpath(shutil.which(python) or python)
    if real.startswith("/usr/") or real.startswith("/bin/"):
        return None
    return os.path.dirname(os.path.dirname(real))


def _which(tool: str) -> str:
    return shutil.which(tool, path=ENV_BASE["PATH"] + ":/usr/sbin:/sbin") or tool
