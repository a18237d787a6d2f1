"""Checking a solution from a separate process, and the runner's entry point.

Bundled after ``_wire`` and ``_runner`` into the trusted runner's source (see ``_runner``). The
solution runs in a forked child that executes its code and then serves calls by name; the tests run
in the trusted runner, where ``candidate`` (and the entry point's name) is a proxy. Arguments and
results cross as plain data (``_wire``), so what the tests compare are genuine built-in values:
patched builtins, always-equal objects and early exits in the solution's process cannot touch them.
Hidden tests arrive from the host only after the solution's process has been forked, so its memory
never holds them.
"""

import builtins
import marshal
import os
import sys
import time

if __name__ != "__main__":  # imported by the host or the tests; the bundled copy has these inline
    from valueagent.sandbox._runner import (
        CASE_OUTPUT_LIMIT,
        REPR_LIMIT,
        SIGKILL,
        _describe,
        _fork,
        _short,
        _status_fields,
        emit,
        kill_rest,
        mode_run,
        setup,
    )
    from valueagent.sandbox._wire import (
        FrameClosed,
        FrameTimeout,
        WireError,
        decode,
        encode,
        read_frame,
        strict_equal,
        write_frame,
    )


class SolutionTimeout(BaseException):
    """The solution did not answer before the deadline (a BaseException: tests cannot swallow it)."""


class SolutionGone(BaseException):
    """The solution's process exited or sent something that is not a well-formed answer."""


class SolutionError(Exception):
    """The solution raised; carries the exception's type name and message."""

    def __init__(self, type_name, message):
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name


class _Capped:
    """A text stream that keeps the first ``limit`` characters written to it."""

    encoding = "utf-8"

    def __init__(self, limit):
        self.limit, self.parts, self.size, self.dropped = limit, [], 0, False

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.limit - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(room, len(text))
        self.dropped |= len(text) > room
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False

    def take(self):
        text = "".join(self.parts) + ("\n[output truncated]" if self.dropped else "")
        self.parts, self.size, self.dropped = [], 0, False
        return text


# -------------------------------------------------------------------------- the solution's process
def _serve(source, req_r, resp_w, capture):
    path = os.path.join(os.getcwd(), "solution.py")
    sys.path.insert(0, os.getcwd())
    sys.argv = [path]
    out = _Capped(CASE_OUTPUT_LIMIT if capture else 0)
    if not capture:  # it is killed, not exited, at the end: nothing may wait in a buffer
        sys.stdout.reconfigure(line_buffering=True)
    else:  # per-case output goes to the case; writes past sys.stdout cannot flood the run
        sys.stdout = sys.stderr = out
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
    namespace = {"__name__": "__solution__", "__file__": path, "__builtins__": builtins}
    try:
        exec(compile(source, path, "exec"), namespace)
    except BaseException as exc:
        write_frame(resp_w, encode(("loaderr", _describe(exc), out.take())))
        os._exit(1)
    names = [name for name, value in list(namespace.items()) if not name.startswith("__") and callable(value)]
    write_frame(resp_w, encode(("ready", names, out.take())))
    while True:
        try:
            _, name, args, kwargs = decode(read_frame(req_r))
        except BaseException:
            os._exit(0)
        try:
            if name not in namespace:
                raise NameError(f"the solution does not define {name!r}")
            value = namespace[name](*args, **kwargs)
            try:
                reply = encode(("ok", value, out.take()))
            except WireError as exc:
                reply = encode(("bad", str(exc), out.take()))
        except BaseException as exc:
            reply = encode(("exc", type(exc).__name__, _short(exc), out.take()))
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        write_frame(resp_w, reply)


class Solution:
    """The checking side's handle on one solution process."""

    def __init__(self, source, *, capture, deadline):
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        self.pid = _fork(lambda: _serve(source, req_r, resp_w, capture), keep=(req_r, resp_w))
        os.close(req_r)
        os.close(resp_w)
        self.pidfd = os.pidfd_open(self.pid)
        self.deadline = deadline
        self.output = ""
        self.status = None

    def _receive(self):
        try:
            reply = decode(read_frame(self.resp_r, deadline=self.deadline, watch=self.pidfd))
        except FrameTimeout:
            raise SolutionTimeout() from None
        except (FrameClosed, WireError) as exc:
            raise SolutionGone(self._gone(exc)) from None
        if not (type(reply) is tuple and reply and type(reply[-1]) is str):
            raise SolutionGone("the solution's process sent a malformed answer")
        self.output += reply[-1]
        return reply

    def ready(self):
        """Wait until the solution's code has run; -> the names it defined. Raises SolutionError on a crash."""
        reply = self._receive()
        if reply[0] == "ready" and len(reply) == 3 and type(reply[1]) is list:
            return [name for name in reply[1] if type(name) is str]
        if reply[0] == "loaderr" and len(reply) == 3:
            raise SolutionError("the solution raised while loading", str(reply[1]))
        raise SolutionGone("the solution's process sent a malformed answer")

    def call(self, name, args, kwargs):
        try:
            request = encode(("call", name, args, kwargs))
        except WireError as exc:
            raise TypeError(f"cannot pass this argument to the solution: {exc}") from None
        try:
            _write_until(self.req_w, len(request).to_bytes(4, "big") + request, self.deadline, self.pidfd)
        except FrameTimeout:
            raise SolutionTimeout() from None
        except FrameClosed as exc:
            raise SolutionGone(self._gone(exc)) from None
        reply = self._receive()
        if reply[0] == "ok" and len(reply) == 3:
            return reply[1]
        if reply[0] == "exc" and len(reply) == 4:
            raise SolutionError(str(reply[1]), str(reply[2]))
        if reply[0] == "bad" and len(reply) == 3:
            raise SolutionError("TypeError", str(reply[1]))
        raise SolutionGone("the solution's process sent a malformed answer")

    def _gone(self, reason):
        self.kill()
        fields = _status_fields(self.status) if self.status is not None else {}
        if fields.get("signal"):
            return f"the solution's process was killed by signal {fields['signal']}"
        if fields.get("exit") is not None:
            return f"the solution's process exited with code {fields['exit']} before answering"
        return f"the solution's process stopped answering ({reason})"

    def kill(self):
        if self.status is None:
            try:
                os.kill(self.pid, SIGKILL)
            except ProcessLookupError:
                pass
            self.status = os.waitpid(self.pid, 0)[1]
            for fd in (self.req_w, self.resp_r, self.pidfd):
                os.close(fd)


def _write_until(fd, data, deadline, watch):
    import select

    os.set_blocking(fd, False)
    view = memoryview(data)
    while view:
        readable, writable, _ = select.select([watch], [fd], [], max(0.0, deadline - time.monotonic()))
        if not writable:
            if readable:
                raise FrameClosed("the solution's process exited")
            raise FrameTimeout("the solution is not reading")
        try:
            view = view[os.write(fd, view) :]
        except BrokenPipeError:
            raise FrameClosed("the solution's process closed its end") from None
        except BlockingIOError:
            continue


class Remote:
    """Stands for a function of the solution; calling it asks the solution's process."""

    __slots__ = ("_solution", "_name")

    def __init__(self, solution, name):
        self._solution, self._name = solution, name

    def __call__(self, *args, **kwargs):
        return self._solution.call(self._name, args, kwargs)

    def __repr__(self):
        return f"<solution function {self._name}>"


# ------------------------------------------------------------------------------------ mode: score
def mode_score(job, ctl_fd, out_fd):
    deadline = time.monotonic() + job["timeout"]
    solution = Solution(job["solution"], capture=False, deadline=deadline)
    hidden = marshal.loads(read_frame(ctl_fd))  # only now: the solution's process never has it
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = _Capped(0)  # what the hidden tests print never reaches the output
    try:
        return _score(solution, hidden)
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        solution.kill()


def _score(solution, hidden):
    entry_point = hidden["entry_point"]
    namespace = {"__name__": "__check__", "__builtins__": builtins}
    try:
        exec(compile(hidden["prompt"], "<prompt>", "exec"), namespace)  # helpers the tests use
    except Exception:
        pass
    try:
        exec(compile(hidden["test"], "<test>", "exec"), namespace)
        check = namespace["check"]
    except BaseException as exc:
        return {"passed": False, "error": True, "detail": f"the tests do not load: {_describe(exc)}"}
    try:
        solution.ready()
        candidate = namespace[entry_point] = Remote(solution, entry_point)
        check(candidate)
    except SolutionTimeout:
        return {"passed": False, "timeout": True, "detail": "the solution did not finish in time"}
    except SolutionGone as exc:
        return {"passed": False, "detail": str(exc)}
    except SolutionError as exc:
        return {"passed": False, "detail": _short(exc), "memory": exc.type_name == "MemoryError"}
    except BaseException as exc:
        return {"passed": False, "detail": _where(exc, "<test>"), "memory": isinstance(exc, MemoryError)}
    return {"passed": True}


def _where(exc, filename):
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    text = _describe(exc)
    return f"{text} (test line {line})" if line else text


# ------------------------------------------------------------------------------------ mode: cases
def mode_cases(job, ctl_fd, out_fd):
    case_timeout = job["case_timeout"]
    solution = Solution(job["solution"], capture=True, deadline=time.monotonic() + case_timeout)
    cases = marshal.loads(read_frame(ctl_fd))
    names, broken = None, None
    for index, (call, expected) in enumerate(cases):
        if broken is None and solution is None:
            solution = Solution(job["solution"], capture=True, deadline=time.monotonic() + case_timeout)
        if broken is None and names is None:
            try:
                names = solution.ready()
            except SolutionTimeout:
                broken = f"the solution did not finish loading within {case_timeout:g}s"
            except (SolutionGone, SolutionError) as exc:
                broken = str(exc)
        if broken is not None:
            emit(
                out_fd,
                {
                    "event": "case",
                    "index": index,
                    "passed": False,
                    "got": None,
                    "error": broken,
                    "output": solution.output if index == 0 else "",
                },
            )
            continue
        result = _one_case(solution, names, call, expected, case_timeout)
        emit(out_fd, {"event": "case", "index": index, **result})
        if result.pop("lost"):
            solution, names = None, None
    if solution is not None:
        solution.kill()
    return {"cases": len(cases)}


def _one_case(solution, names, call, expected, case_timeout):
    namespace = {"__builtins__": builtins}
    namespace.update((name, Remote(solution, name)) for name in names)
    solution.deadline = time.monotonic() + case_timeout
    got, error, lost = None, None, False
    try:
        want = eval(compile(expected, "<expected>", "eval"), dict(namespace))
        try:
            value = eval(compile(call, "<call>", "eval"), namespace)
        except SolutionTimeout:
            lost, error = True, f"timed out after {case_timeout:g}s"
        except SolutionGone as exc:
            lost, error = True, str(exc)
        except SolutionError as exc:
            error = str(exc)
        except BaseException as exc:
            error = _describe(exc)
        else:
            got = _short(repr(value), REPR_LIMIT)
            if not strict_equal(value, want):
                error = f"expected {_short(repr(want), REPR_LIMIT)}, got {got}"
                if repr(value) == repr(want) or value == want:
                    error += f" (types differ: {type(value).__name__} vs {type(want).__name__})"
    except (SolutionTimeout, SolutionGone) as exc:
        lost, error = True, f"could not evaluate the expected value: {str(exc) or 'timed out'}"
    except BaseException as exc:
        error = f"could not evaluate the expected value: {_describe(exc)}"
    output, solution.output = solution.output, ""
    if len(output) > CASE_OUTPUT_LIMIT + 64:  # the solution's process caps it; it is not trusted to
        output = output[:CASE_OUTPUT_LIMIT] + "\n[output truncated]"
    if lost:
        solution.kill()
    return {"passed": error is None, "got": got, "error": error, "output": output, "lost": lost}


# ------------------------------------------------------------------------------------ entry point
MODES = {"run": mode_run, "score": mode_score, "cases": mode_cases}


def main(argv):
    ctl_fd, out_fd = int(argv[1]), int(argv[2])
    code = 0
    try:
        emit(out_fd, {"event": "started"})
        job = marshal.loads(read_frame(ctl_fd))
        setup(job)
        outcome = MODES[job["mode"]](job, ctl_fd, out_fd)
        kill_rest(job)
        nonce = read_frame(ctl_fd).decode("ascii")  # read only now: nothing untrusted is alive
        emit(out_fd, {"event": "final", "nonce": nonce, "outcome": outcome})
    except BaseException as exc:
        code = 70
        try:
            emit(out_fd, {"event": "internal_error", "detail": _describe(exc)})
        except BaseException:
            pass
    os._exit(code)
