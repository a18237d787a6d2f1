"""Sandbox.run and the pool: outcomes are values, limits hold, the verdict needs the runner's nonce."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import typer
from typer.testing import CliRunner

from valueagent.cli import sandbox_cmd
from valueagent.sandbox import (
    ExecResult,
    IsolationLevel,
    LevelReport,
    Sandbox,
    SandboxUnavailable,
    SandboxWarning,
)
from valueagent.sandbox.core import _read_verdict
from valueagent.sandbox.execute import Raw
from valueagent.sandbox.slots import LOCK_DIR, Slot, processes_of

app = typer.Typer()  # only this module's commands: the tests do not depend on the other CLI modules
sandbox_cmd.register(app)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        box = Sandbox(workers=4)
    yield box
    box.close()


def test_strongest_level_is_used_when_available(sandbox: Sandbox) -> None:
    if os.geteuid() != 0 or shutil.which("bwrap") is None:
        pytest.skip("bubblewrap as a dedicated uid needs root and `apt-get install bubblewrap`")
    assert sandbox.level is IsolationLevel.BWRAP


def test_a_program_that_runs_to_the_end_passes(sandbox: Sandbox) -> None:
    result = sandbox.run("import sys\nprint('out')\nprint('err', file=sys.stderr)\n")
    assert (result.status, result.returncode, result.stdout, result.stderr) == ("passed", 0, "out\n", "err\n")
    assert result.isolation == sandbox.level.label
    assert json.loads(json.dumps(result.to_dict())) == result.to_dict()


@pytest.mark.parametrize(
    ("source", "returncode", "detail"),
    [
        ("raise ValueError('boom')", 1, "uncaught ValueError"),
        ("def f(:\n", 1, "uncaught SyntaxError"),
        ("import sys\nsys.exit(0)\nx = 1", 0, "SystemExit(0)"),
        ("import sys\nsys.exit(3)", 3, "SystemExit(3)"),
        ("import os\nos._exit(0)", 0, "before the end"),
        ("import atexit, os\natexit.register(os._exit, 0)\nraise AssertionError", 0, "uncaught AssertionError"),
        ("import atexit, os\natexit.register(os._exit, 4)", 4, "ran to the end but exited with status 4"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", -9, "SIGKILL"),
    ],
)
def test_failures_are_values_and_exit_codes_do_not_decide(
    sandbox: Sandbox, source: str, returncode: int, detail: str
) -> None:
    result = sandbox.run(source)
    assert result.status == "failed"
    assert result.returncode == returncode
    assert detail in result.detail


def test_tracebacks_start_at_the_program(sandbox: Sandbox) -> None:
    result = sandbox.run("def f():\n    raise KeyError('k')\n\nf()\n")
    assert result.stderr.startswith("Traceback (most recent call last):\n  File ")
    assert 'main.py", line 4' in result.stderr and "KeyError: 'k'" in result.stderr
    assert "<runner>" not in result.stderr


def test_timeout_keeps_what_was_printed(sandbox: Sandbox) -> None:
    result = sandbox.run("print('before the hang')\nwhile True:\n    pass\n", timeout=0.5)
    assert result.status == "timeout" and result.returncode is None
    assert result.stdout == "before the hang\n"
    assert result.duration_s >= 0.5  # it ran until the limit; how much longer the kill took is not its behaviour


def test_memory_limit(sandbox: Sandbox) -> None:
    result = sandbox.run("x = bytearray(400 << 20)", memory_mb=128)
    assert result.status == "memory"
    assert sandbox.run("x = bytearray(40 << 20)", memory_mb=128).status == "passed"


def test_output_limit_caps_what_comes_back(sandbox: Sandbox) -> None:
    result = sandbox.run("import sys\nwhile True:\n    sys.stdout.write('z' * 4096)\n", output_limit=10_000)
    assert result.status == "output_limit"
    assert len(result.stdout) + len(result.stderr) <= 10_000


def test_files_are_readable_and_importable(sandbox: Sandbox) -> None:
    source = "import helper\nprint(helper.VALUE, open('data/input.txt').read())\n"
    result = sandbox.run(source, files={"helper.py": "VALUE = 41 + 1\n", "data/input.txt": b"bytes ok"})
    assert result.status == "passed" and result.stdout == "42 bytes ok\n"


@pytest.mark.parametrize("path", ["/etc/passwd", "../up.txt", "a/../b", "", "main.py", "./x"])
def test_bad_file_paths_are_caller_errors(sandbox: Sandbox, path: str) -> None:
    with pytest.raises(ValueError):
        sandbox.run("pass", files={path: "x"})


@pytest.mark.parametrize("limits", [{"timeout": 0}, {"memory_mb": 16}, {"output_limit": -1}, {"disk_mb": 0}])
def test_bad_limits_are_caller_errors(sandbox: Sandbox, limits: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        sandbox.run("pass", **limits)  # type: ignore[arg-type]


def test_each_run_starts_clean(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VALUEAGENT_HOST_SECRET", "do-not-leak")
    first = sandbox.run("open('left.txt', 'w').write('x')\nimport os\nprint(sorted(os.environ))")
    second = sandbox.run("import os\nprint(os.path.exists('left.txt'), input.__name__)\ninput()")
    assert first.status == "passed" and "VALUEAGENT_HOST_SECRET" not in first.stdout
    assert second.stdout.startswith("False input") and "EOFError" in second.stderr


def test_concurrent_sync_calls_share_the_pool(sandbox: Sandbox) -> None:
    with ThreadPoolExecutor(8) as threads:
        results = list(threads.map(lambda i: sandbox.run(f"print({i} * {i})"), range(16)))
    assert [r.stdout for r in results] == [f"{i * i}\n" for i in range(16)]


class SlotWatch:
    """Counts the sandbox's worker slots lent out, as events: a program runs only while it holds one."""

    def __init__(self, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
        self.held = self.most = self.returned = 0
        self._lock = threading.Lock()
        lend = sandbox._pool.slot

        @contextmanager
        def watched() -> Iterator[Slot]:
            with lend() as slot:
                self._moved(+1)
                try:
                    yield slot
                finally:
                    self._moved(-1)

        monkeypatch.setattr(sandbox._pool, "slot", watched)

    def _moved(self, step: int) -> None:
        with self._lock:
            self.held += step
            self.most = max(self.most, self.held)
            self.returned += step < 0

    async def until(self, condition: Callable[[SlotWatch], bool], what: str) -> None:
        """Wait for ``condition``; the 120 s guard only turns a hang into a failure, it bounds no speed."""
        for _ in range(12_000):
            if condition(self):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"never saw {what}: held {self.held}, most {self.most}, returned {self.returned}")


async def test_async_runs_in_parallel_across_workers(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four programs that never end on their own hold the four slots at once: arun does not serialize."""
    watch = SlotWatch(sandbox, monkeypatch)
    tasks = [asyncio.ensure_future(sandbox.arun("while True:\n    pass\n", timeout=120)) for _ in range(4)]
    await watch.until(lambda w: w.most == 4, "four programs running at once")
    for task in tasks:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
    await watch.until(lambda w: w.returned == 4, "every slot back")


async def test_cancelling_arun_kills_the_program_and_frees_the_slot(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = SlotWatch(sandbox, monkeypatch)
    task = asyncio.ensure_future(sandbox.arun("while True:\n    pass\n", timeout=60))
    await watch.until(lambda w: w.held == 1, "the program take its slot")  # cancel it while it runs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await watch.until(lambda w: w.returned == 1, "its slot back")
    for slot in sandbox._pool.slots:
        assert slot.uid is None or processes_of(slot.uid) == []
    results = await asyncio.gather(*(sandbox.arun("pass", timeout=5) for _ in range(4)))
    assert all(r.status == "passed" for r in results)


@pytest.mark.skipif(os.geteuid() != 0, reason="dedicated uids need root")
def test_pools_never_share_a_uid_and_release_them_on_close() -> None:
    first, second = Sandbox(workers=2, level="rlimits"), Sandbox(workers=2, level="rlimits")
    first_uids = [slot.uid for slot in first._pool.slots]
    assert len({*first_uids, *(slot.uid for slot in second._pool.slots)}) == 4
    first.close()
    for uid in first_uids:  # released: the lock can be taken again
        fd = os.open(f"{LOCK_DIR}/uid-{uid}.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    second.close()
    with pytest.raises(RuntimeError, match="closed"):
        second.run("pass")


def test_unusable_interpreter_raises_with_a_fix() -> None:
    with pytest.raises(SandboxUnavailable, match="apt-get install -y bubblewrap"):
        Sandbox(workers=1, python="/nonexistent/python3")


def test_min_level_refuses_weaker_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    reports = [LevelReport(IsolationLevel.BWRAP, False, "bwrap not found")]
    monkeypatch.setattr("valueagent.sandbox.sandbox.detect", lambda **_: reports)
    with pytest.raises(SandboxUnavailable, match="at or above 'bwrap'"):
        Sandbox(workers=1, min_level="bwrap")


def test_weaker_level_is_announced(monkeypatch: pytest.MonkeyPatch) -> None:
    reports = [
        LevelReport(IsolationLevel.BWRAP, False, "bwrap not found"),
        LevelReport(IsolationLevel.RLIMITS, True, "rlimits only"),
    ]
    monkeypatch.setattr("valueagent.sandbox.sandbox.detect", lambda **_: reports)
    with pytest.warns(SandboxWarning, match="weaker than bubblewrap"):
        box = Sandbox(workers=1)
    try:
        assert box.level is IsolationLevel.RLIMITS
        assert box.run("pass").isolation == "rlimits"
    finally:
        box.close()


def _raw(*events: dict[str, object]) -> Raw:
    return Raw(events=list(events))


@pytest.mark.parametrize(
    ("events", "trusted"),
    [
        ([{"event": "final", "nonce": "N" * 32, "outcome": {}}], True),
        ([{"event": "final", "nonce": "0" * 32, "outcome": {}}], False),
        ([{"event": "final", "nonce": "N" * 32, "outcome": {}}] * 2, False),
        (
            [
                {"event": "final", "nonce": "0" * 32, "outcome": {}},
                {"event": "final", "nonce": "N" * 32, "outcome": {}},
            ],
            False,
        ),
        ([{"event": "final", "nonce": "N" * 32, "outcome": {}}, {"event": "internal_error", "detail": ""}], False),
        ([], False),
    ],
)
def test_only_one_final_event_with_this_runs_nonce_counts(events: list[dict[str, object]], trusted: bool) -> None:
    verdict = _read_verdict(_raw({"event": "started"}, *events), "N" * 32)
    assert (verdict.outcome is not None) is trusted
    assert verdict.tampered is (bool(events) and not trusted)


def test_cli_run_prints_json_and_exits_zero_whatever_the_program_did(tmp_path: os.PathLike[str]) -> None:
    program = os.path.join(tmp_path, "prog.py")
    with open(program, "w") as handle:
        handle.write("print('hi')\nraise SystemExit(3)\n")
    result = CliRunner().invoke(app, ["sandbox", "run", program, "--timeout", "5", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"status", "returncode", "duration_s", "stdout", "stderr", "isolation"} <= payload.keys()
    assert (payload["status"], payload["returncode"], payload["stdout"]) == ("failed", 3, "hi\n")
    assert isinstance(ExecResult(**payload), ExecResult)


def test_cli_usage_errors_exit_nonzero(tmp_path: os.PathLike[str]) -> None:
    missing = os.path.join(tmp_path, "missing.py")
    assert CliRunner().invoke(app, ["sandbox", "run", missing]).exit_code != 0


def test_cli_check_names_every_level() -> None:
    result = CliRunner().invoke(app, ["sandbox", "check", "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert [entry["level"] for entry in payload["levels"]] == ["bwrap", "unshare", "uid", "rlimits"]
    assert payload["level"] in {"bwrap", "unshare", "uid", "rlimits"}
