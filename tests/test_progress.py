"""Progress inside a task: the agents' stream events reach the run's progress (segments, tokens, tests,
backtracks) without changing what is recorded, and the estimate of time left exists before the first item
finishes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.agent_helpers import GATE, LOW, PROMPT, SENTINEL, seg
from tests.fakes import ScriptedBackend, ScriptedSandbox, Step
from valueagent.cli.progress import Activity, TaskProgress
from valueagent.runner import RunConfig, read_results, run_tasks
from valueagent.tasks import Task

TASKS = tuple(Task(f"t/{i}", PROMPT, "f", f"assert True  # {SENTINEL}\n") for i in range(3))
VOLATILE = ("wall_s", "finished_at")


def _script(request: Any, i: int) -> Step:
    if not request.assistant_prefix.endswith("def f(x):\n"):
        return seg("def f(x):\n")
    if request.temperature == 0:
        return seg("    return BAD\n", LOW)  # a low greedy second segment: the gate backtracks
    return seg("    return x + 1\n```", end=True)  # the resample


async def _run(out: Path, on_event: Any = None) -> list[dict[str, Any]]:
    config = RunConfig(policies=("value", "always-test"), output_dir=out, concurrency=2, seed=3,
                       gate_configs={"value": GATE}, segment_tokens=4)
    await run_tasks(TASKS, backend=ScriptedBackend(_script), sandbox=ScriptedSandbox(), config=config,
                    on_event=on_event)
    records = read_results(out)
    return sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in records),
                  key=lambda r: (r["task_id"], r["policy"]))


async def test_events_reach_the_caller_and_change_no_record(tmp_path: Path) -> None:
    events: list[tuple[str, str, dict[str, Any]]] = []
    streamed = await _run(tmp_path / "a", lambda t, p, e: events.append((t, p, e)))
    plain = await _run(tmp_path / "b")
    for r in (*streamed, *plain):
        r["meta"] = r["settings"] = None
    assert streamed == plain
    pairs = {(t, p) for t, p, _ in events}
    assert pairs == {(t.task_id, p) for t in TASKS for p in ("value", "always-test")}
    assert all(e["task_id"] == t for t, _, e in events)
    activity: dict[tuple[str, str], Activity] = {}
    for t, p, e in events:
        activity.setdefault((t, p), Activity()).update(e)
    for r in streamed:
        act = activity[(r["task_id"], r["policy"])]
        assert act.tests == r["test_runs"] and act.backtracks == r["backtracks"]
        assert act.tokens >= r["tokens"] - 8  # segments read, backtracked ones included
    assert any(a.backtracks for a in activity.values()) and any(a.segments for a in activity.values())


def test_activity_counts_segments_tokens_tests_and_backtracks() -> None:
    act = Activity()
    for e in ({"kind": "segment", "attempt": 0, "n_tokens": 32, "value": 0.1},
              {"kind": "backtrack", "position": 0},
              {"kind": "segment", "attempt": 0, "n_tokens": 32, "value": 0.2},
              {"kind": "segment", "attempt": 0, "n_tokens": 10, "value": 0.3},
              {"kind": "final", "attempt": 0, "n_tokens": 42, "value": 0.25},
              {"kind": "tests", "attempt": 0, "n_tokens": 0},
              {"kind": "final", "attempt": 1, "n_tokens": 50, "value": 0.4}):
        act.update(e)
    assert (act.segments, act.backtracks, act.tests, act.tokens, act.attempt) == (3, 1, 1, 124, 1)
    assert act.value == 0.4 and "backtracks" in act.describe()


def test_off_a_terminal_inside_a_task_is_throttled_and_time_left_comes_early(monkeypatch, capsys) -> None:
    import time

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    with TaskProgress("run", expected_tokens=100, quiet_s=30) as progress:
        progress.start(2)
        now[0] += 10
        progress.event("t/0 value", {"kind": "segment", "attempt": 0, "n_tokens": 50})  # < 30 s: quiet
        progress.event("t/0 value", {"kind": "tests", "attempt": 0})  # tests: said at once
        now[0] += 30
        progress.event("t/0 value", {"kind": "segment", "attempt": 0, "n_tokens": 25})
        progress.advance("done 1", key="t/0 value", tokens=75)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "run: 2 to run"
    assert err[1].startswith("run t/0 value: 50 tokens · 1 test runs · 0 backtracks · 1 segments · attempt 1")
    assert "[0:10, ~0:30 left]" in err[1]  # half an item of two in 10 s: 1.5 items, 30 s, left
    assert err[2].startswith("run t/0 value:") and "75 tokens" in err[2]
    assert err[3].startswith("run 1/2 [0:40, ~0:40 left] done 1") and len(err) == 4


def test_axis_counters_write_lines_to_a_log_and_say_the_time_left(monkeypatch) -> None:
    import io
    import time

    from valueagent.axis.progress import Counter, Stages

    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    log = io.StringIO()
    Stages("axis build", ("data", "rollouts"), log).begin("rollouts", "4")
    counter = Counter("rollouts", 4, every_s=30, stream=log)
    for i in range(1, 5):
        now[0] += 10
        counter.update(i)
    counter.close()
    lines = log.getvalue().splitlines()
    assert lines[0] == "[axis build] stage 2/2 rollouts: 4 (elapsed 0:00)"
    assert lines[1:] == ["rollouts: 3/4, 0.10/s, ~0:10 left", "rollouts: 4/4, 0.10/s, ~0:00 left"]
