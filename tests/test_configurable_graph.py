"""One LangGraph graph serves every registered policy, picked per run by its config (issue 24): a real
LangGraph run on the tiny random Qwen3, the policy named in `configurable`; an unknown one fails that run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from valueagent.agent import lazy
from valueagent.tasks import Task


@pytest.fixture
def tiny_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Any, tiny_tokenizer: Any) -> None:
    tiny_model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    monkeypatch.setenv("VALUEAGENT_MODEL", str(tmp_path))
    monkeypatch.setenv("VALUEAGENT_AXIS", "none")
    monkeypatch.setenv("VALUEAGENT_UNCALIBRATED", "1")
    monkeypatch.setattr(lazy, "_SHARED", {})  # a backend of its own, gone after the test


@pytest.mark.slow  # eight tiny-model samples of up to the default answer length
async def test_the_policy_is_picked_per_run_by_its_config(tiny_env: None) -> None:
    graph = lazy.configurable_graph()
    task = Task("t/0", "def add(a, b):\n", "add", "def check(candidate):\n    assert candidate(1, 2) == 3\n").public()
    single = await graph.ainvoke({"task": task.to_dict(), "seed": 0}, config={"configurable": {"policy": "single"}})
    assert single["completion"] is not None and single["used"]["test_runs"] == 0
    ranked = await graph.ainvoke({"task": task.to_dict(), "seed": 0},
                                 config={"configurable": {"policy": "random-rank"}})
    assert "of 8 by random" in ranked["stop_reason"]
    with pytest.raises(ValueError, match="unknown policy 'valeu'"):
        await graph.ainvoke({"task": task.to_dict(), "seed": 0}, config={"configurable": {"policy": "valeu"}})
