"""Replays of two banks compared: the per-task difference of differences isolates the reading's edge over its
control, same tasks are required, and the PNGs share their axes. Run on the committed 0.5B replay."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from valueagent.bank.compare import axis_effect, compare, shared_limits, write_comparison
from valueagent.bank.store import BankError

REPLAY = Path(__file__).resolve().parents[1] / "evals" / "bank" / "replay-0.5b" / "replay.json"


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return json.loads(REPLAY.read_text())


def _row(rows: list[dict[str, Any]], policy: str, control: str) -> dict[str, Any]:
    return next(r for r in rows if r["policy"] == policy and r["control"] == control)


def test_a_replay_against_itself_shows_no_axis_effect(base: dict[str, Any]) -> None:
    out = compare([base, base], ["a", "b"])
    rows = out["axis_effect"]["b"]
    assert {(r["policy"], r["control"]) for r in rows} >= {("value-top1", "random-top1"), ("value-seq", "random-seq")}
    for r in rows:
        assert r["difference_of_differences"]["delta"] == 0.0
        assert r["difference_of_differences"]["p"] == 1.0
        assert r["base"] == r["other"]


def test_the_difference_of_differences_counts_what_the_reading_alone_gained(base: dict[str, Any]) -> None:
    ids = sorted(row[0] for row in base["per_task"]["single"])
    other = copy.deepcopy(base)
    value = {row[0]: row for row in other["per_task"]["value-top1"]}
    random = {row[0]: row for row in other["per_task"]["random-top1"]}
    # six tasks both failed: the value pick now passes on them, the control's stays failed
    flipped = [t for t in ids if not value[t][1] and not random[t][1]][:6]
    for t in flipped:
        value[t][1] = True
    rows = axis_effect(base, other, ids)
    r = _row(rows, "value-top1", "random-top1")
    d = r["difference_of_differences"]
    assert d["delta"] == pytest.approx(6 / len(ids))
    assert d["ci"][0] > 0 and d["p"] == pytest.approx(2 / 2**6)  # six concordant +1s: exact sign-flip p
    assert d["p_holm"] == pytest.approx(min(1.0, len(rows) * d["p"]))  # the smallest p of the pairs
    assert r["policy_change"] == {"delta": pytest.approx(6 / len(ids)), "gained": 6, "lost": 0,
                                  "p": pytest.approx(2 / 2**6)}
    assert r["control_change"]["gained"] == r["control_change"]["lost"] == 0
    # a control that gains the same tasks cancels the policy's gain: no edge for the reading
    for t in flipped:
        random[t][1] = True
    assert _row(axis_effect(base, other, ids), "value-top1", "random-top1")["difference_of_differences"]["delta"] == 0


def test_replays_of_other_eval_tasks_are_refused_with_the_fix(base: dict[str, Any]) -> None:
    other = copy.deepcopy(base)
    for rows in other["per_task"].values():
        rows.pop()
    with pytest.raises(BankError, match="--calibration-ids"):
        compare([base, other], ["a", "b"])


def test_pngs_share_axes_that_hold_both_frontiers(base: dict[str, Any], tmp_path: Path) -> None:
    other = copy.deepcopy(base)
    for v in other["frontier"].values():
        v["tokens"] *= 3
    (tok, runs, acc) = shared_limits([base, other])
    assert tok[1] >= max(v["tokens"] for v in other["frontier"].values())
    assert acc[0] <= min(v["pass_at_1"] for r in (base, other) for v in r["frontier"].values())
    write_comparison([base, other], ["small", "large"], tmp_path / "cmp" / "compare.json")
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == ["compare.json", "compare.md", "large.png",
                                                                    "small.png"]
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| value-top1 vs random-top1 |" in md and "Did the axis help more on large than on small?" in md


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from valueagent.cli.main import app

    return CliRunner().invoke(app, ["bank", "compare", *args])


@pytest.mark.parametrize("args,message", [
    (["--labels", "a"], "one distinct label per replay"),
    (["--labels", "a,a"], "one distinct label per replay"),
    (["--labels", "a,b/c"], "name files"),
])
def test_compare_cli_bad_input_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    res = _cli(str(REPLAY), str(REPLAY), *args, "--output", str(tmp_path / "c.json"))
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and message in lines[0], res.output
    assert not (tmp_path / "c.json").exists()


def test_compare_cli_refuses_a_file_that_is_not_a_replay(tmp_path: Path) -> None:
    bad = tmp_path / "bank.json"
    bad.write_text('{"model_id": "x"}')
    res = _cli(str(REPLAY), str(bad), "--labels", "a,b", "--output", str(tmp_path / "c.json"))
    assert res.exit_code == 2 and "is not a replay JSON" in res.output, res.output
