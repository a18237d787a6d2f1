"""A signal of one's own is one module: a plugin outside the package registers a signal and a `<signal>-rank`
policy; `bank replay` pairs it with the controls and `run` executes it live on a real (tiny) model. An unknown
signal is an error where it is named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from valueagent.cli.main import app
from valueagent.signals import SignalError, SignalSpec, register_signal, signal_spec

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
PLUGIN = '''
"""Rank fresh samples by brevity: a signal and its policy, registered from outside the package."""
from valueagent import SignalSpec, register_policy, register_signal, search_policy


def brevity(sample):
    return -float(len(sample["token_ids"]))


register_signal(SignalSpec(name="brevity", score=brevity, description="fewer tokens first"))
register_policy(search_policy("brevity-rank", "rank", "brevity", "best of 8 by brevity, visible tests in that order"))
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "brevity_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(folder))
    return "brevity_plugin"  # imported once per process, as a plugin is: its registrations then stay


def test_an_unknown_signal_is_an_error_where_it_is_named() -> None:
    from valueagent.agent.gate import GateConfig
    from valueagent.agent.search import SearchSpec

    with pytest.raises(SignalError, match="unknown signal 'valeu'.*--plugin"):
        signal_spec("valeu")
    with pytest.raises(SignalError, match="unknown signal 'valeu'"):
        SearchSpec(action="rank", signal="valeu")
    with pytest.raises(ValueError, match="gate signal 'brevity' is not one the segment gate reads"):
        GateConfig(signal="brevity")  # type: ignore[arg-type]
    with pytest.raises(SignalError, match="already registered"):
        register_signal(SignalSpec(name="logprob", score=lambda s: 0.0))
    with pytest.raises(SignalError, match="fixed signal needs a score"):
        register_signal(SignalSpec(name="nothing"))


@pytest.mark.slow  # replays the committed 0.5B bank (~164 tasks)
def test_a_plugin_signal_is_replayed_and_paired_with_its_controls(plugin: str) -> None:
    bank = ROOT / "evals" / "bank" / "qwen2.5-coder-0.5b-int8"
    res = runner.invoke(app, ["--plugin", plugin, "bank", "replay", str(bank), "--json",
                              "--policies", "brevity-rank,random-rank,logprob-rank,brevity-top1,random-top1"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert {"random-rank", "logprob-rank"} <= set(out["paired"]["brevity-rank"])
    assert out["paired"]["brevity-top1"]["random-top1"]["wins"] >= 0 and "brevity" in out["signals"]


def test_a_plugin_rank_policy_runs_live(plugin: str, tmp_path: Path, tiny_model: Any, tiny_tokenizer: Any) -> None:
    model = tmp_path / "tiny"
    tiny_model.save_pretrained(model)
    tiny_tokenizer.save_pretrained(model)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"task_id": "t/0", "prompt": "def add(a, b):\n", "entry_point": "add",
                                 "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
                                 "visible_tests": [{"call": "add(1, 2)", "expected": "3"}]}) + "\n")
    res = runner.invoke(app, ["--plugin", plugin, "run", str(tasks), "--policy", "brevity-rank", "--model", str(model),
                              "--axis", "none", "--answer-tokens", "8", "--max-tokens", "200", "--workers", "1",
                              "--output-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    (record,) = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert record["policy"] == "brevity-rank" and len(record["candidates"]) == 8
    from valueagent.eval.summary import control_pairs

    assert {("brevity-rank", "random-rank"), ("brevity-rank", "logprob-rank")} <= set(control_pairs())
