"""The trusted runner: the first Python code inside the sandbox, under the system python3.

The host starts ``python3 -I -S -B -c <launch.BOOTSTRAP> CTL_FD OUT_FD``; the bootstrap loads this
runner (``_wire`` + ``_runner`` + ``_checker``, compiled once per interpreter) from the first frame
on CTL_FD. The runner then reads the job (marshal frames), drops privileges, sets resource limits,
forks the untrusted program into its own session, waits for it, kills everything that is left, and
only then reads this run's nonce (the last frame on CTL_FD) and writes it with the outcome, as JSON
lines, to OUT_FD. The untrusted processes never hold CTL_FD or OUT_FD, and this process is not
dumpable, so they cannot read its memory or its descriptors: a run that does not get to the end
cannot produce the nonce.

Three modes: ``run`` (a program; passed = its main code ran to the end and it exited 0), ``score``
(hidden tests: the solution serves calls from a separate process, the tests run here against
genuine built-in values) and ``cases`` (visible tests, one result per case). Like ``_wire`` it has
no ``from __future__`` line and imports only cheap modules: this code runs once per execution.
"""

import builtins
import os
import resource
import sys
import time

SIGKILL = 9
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
CASE_OUTPUT_LIMIT = 8192
REPR_LIMIT = 2000
_JSON_ESCAPES = {i: f"\\u{i:04x}" for i in range(32)} | {34: '\\"', 92: "\\\\"}


# ----------------------------------------------------------------------------------------- output
def emit(fd, event):
    """Write one JSON line to the verdict descriptor (no ``json`` import: it costs milliseconds)."""
    data = (_json(event) + "\n").encode("utf-8", "replace")
    while data:
        data = data[os.write(fd, data) :]


def _json(value):
    if value is None or value is True or value is False:
        return {None: "null", True: "true", False: "false"}[value]
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value) if value == value and abs(value) != float("inf") else "null"
    if kind is str:
        return '"' + value.translate(_JSON_ESCAPES) + '"'
    if kind is list or kind is tuple:
        return "[" + ",".join(_json(item) for item in value) + "]"
    if kind is dict:
        return "{" + ",".join(_json(str(k)) + ":" + _json(v) for k, v in value.items()) + "}"
    return _json(repr(value))


def _short(text, limit=500):
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(exc):
    try:
        message = _short(exc)
    except BaseException:
        message = "<unprintable>"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# ------------------------------------------------------------------------------------------ setup
def _libc():
    """``prctl`` and ``mount`` from libc through ``_ctypes``: importing ``ctypes`` costs ms per run."""
    import _ctypes

    class CInt(_ctypes._SimpleCData):
        _type_ = "i"

    class Function(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = CInt

    class Library:
        _handle = _ctypes.dlopen(None, 2)  # RTLD_NOW

    library = Library()
    return {name: Function((name, library)) for name in ("prctl", "mount")}


def _check(result, what):
    if result != 0:
        import _ctypes

        err = _ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setup(job):
    """Mounts (as root, unshare level), privilege drop, prctl flags, rlimits, work dir and files."""
    libc = _libc()
    uid = job.get("uid")
    if job.get("mounts"):
        _mount_private(libc, job, uid)
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid):
            raise OSError("could not drop privileges")
    _check(libc["prctl"](PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    _check(libc["prctl"](PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(DUMPABLE)")
    _check(libc["prctl"](PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(CHILD_SUBREAPER)")
    for name, value in job["limits"].items():
        limit = getattr(resource, name)
        soft, hard = value if isinstance(value, tuple) else (value, value)
        resource.setrlimit(limit, (soft, hard))
    os.umask(0o077)
    os.chdir(job["workdir"])
    for relpath, data in job["files"]:
        parts = relpath.split("/")
        if relpath.startswith("/") or ".." in parts or "" in parts:
            raise ValueError(f"bad file path {relpath!r}")
        if len(parts) > 1:
            os.makedirs("/".join(parts[:-1]), exist_ok=True)
        with open(relpath, "wb") as handle:
            handle.write(data)


def _mount_private(libc, job, uid):
    _check(libc["mount"](None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    _check(libc["mount"](None, b"/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID, None), "remount / ro")
    flags = MS_NOSUID | MS_NODEV
    mounts = [(job["workdir"], f"size={job['disk_bytes']},mode=0700,uid={uid},gid={uid}")]
    mounts += [(path, "size=1m,mode=01777") for path in ("/dev/shm",)]
    mounts += [(path, "size=16k,mode=0755") for path in ("/var/tmp", "/run/lock", "/run/shm")]
    for path, options in mounts:
        if os.path.isdir(path) and not os.path.islink(path):
            _check(libc["mount"](b"tmpfs", path.encode(), b"tmpfs", flags, options.encode()), f"tmpfs {path}")


# --------------------------------------------------------------------------------------- children
def _enter_child(keep):
    """First thing in every forked child, before any untrusted code: own session, only ``keep`` fds."""
    os.setsid()
    top = 3
    for fd in sorted(set(keep)):
        if fd >= top:
            os.closerange(top, fd)
            top = fd + 1
    os.closerange(top, resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def _fork(body, keep):
    pid = os.fork()
    if pid == 0:
        try:
            _enter_child(keep)
            body()
        finally:
            os._exit(70)
    return pid


def _wait(pid, deadline):
    """Wait for ``pid`` until ``deadline``; kill it when the deadline passes. -> (status, timed_out)."""
    import select

    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
    finally:
        os.close(pidfd)
    timed_out = not ready
    if timed_out:
        os.kill(pid, SIGKILL)
    return os.waitpid(pid, 0)[1], timed_out


def _status_fields(status):
    if os.WIFSIGNALED(status):
        return {"exit": None, "signal": os.WTERMSIG(status)}
    return {"exit": os.WEXITSTATUS(status), "signal": None}


def _finish_like_python():
    """What the interpreter does after the main module: join threads, run atexit, flush."""
    try:
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()
    except BaseException:
        pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def kill_rest(job):
    """Kill every process of this run except this one, and reap them."""
    if job["kill_all"]:
        # A pid namespace or a dedicated uid: -1 reaches only this run. One call reaches every such
        # process, and a process with SIGKILL pending can neither fork nor run another instruction;
        # kill(-1) reports success whenever any other process is visible, so there is nothing to poll.
        for _ in range(2):
            try:
                os.kill(-1, SIGKILL)
            except ProcessLookupError:
                break
    else:
        for _ in range(100):
            victims = _descendants(os.getpid())
            if not victims:
                break
            for pid in victims:
                try:
                    os.kill(pid, SIGKILL)
                except ProcessLookupError:
                    pass
            _reap()
    _reap()


def _descendants(root):
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    stat = handle.read()
                parents[int(name)] = int(stat[stat.rindex(b")") + 2 :].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# ------------------------------------------------------------------------------------- mode: run
def mode_run(job, ctl_fd, out_fd):
    done_r, done_w = os.pipe()
    started = time.monotonic()
    pid = _fork(lambda: _exec_main(job["source"], done_w), keep=(done_w,))
    os.close(done_w)
    status, timed_out = _wait(pid, started + job["timeout"])
    duration = time.monotonic() - started
    os.set_blocking(done_r, False)
    try:
        report = os.read(done_r, 4096).split(b"\n", 1)[0].decode("utf-8", "replace")
    except BlockingIOError:
        report = ""
    os.close(done_r)
    return {"report": report, "timeout": timed_out, "duration": duration, **_status_fields(status)}


def _exec_main(source, done_w):
    path = os.path.join(os.getcwd(), "main.py")
    module = type(sys)("__main__")
    module.__dict__.update(__file__=path, __builtins__=builtins)
    sys.modules["__main__"] = module
    sys.argv = [path]
    sys.path.insert(0, os.getcwd())
    code, report = 0, b"done"
    try:
        sys.stdout.reconfigure(line_buffering=True)  # what was printed survives a kill at the deadline
        exec(compile(source, path, "exec"), module.__dict__)
    except SystemExit as exc:
        code = _exit_code(exc.code)
        report = b"exit %d" % code
    except BaseException as exc:
        code, report = 1, b"exc " + type(exc).__name__.encode("utf-8", "replace")
        try:  # the traceback starts at the program: tb_next skips this function's frame
            exc = exc.with_traceback(exc.__traceback__.tb_next)
            sys.__excepthook__(type(exc), exc, exc.__traceback__)
        except BaseException:
            pass
        del exc
    try:
        os.write(done_w, report + b"\n")
    except OSError:
        pass
    _finish_like_python()
    os._exit(code)


def _exit_code(value):
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    try:
        print(value, file=sys.stderr)
    except BaseException:
        pass
    return 1
