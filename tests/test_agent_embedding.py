"""Embedding: hidden tests unreachable, JSON checkpoints, stream events, parent graphs, the critic, docs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.memory import MemorySaver
from langgraph.graph import END, START, StateGraph

from tests.agent_helpers import GATE, LOW, SENTINEL, TASK, seg
from tests.fakes import ScriptedBackend, ScriptedSandbox, Step
from valueagent.agent import (
    EVENT,
    AgentState,
    GateConfig,
    ValueCritic,
    agent_input,
    agent_settings,
    create_value_agent,
    make_backtrack_node,
    make_gate_node,
    make_generate_node,
    make_prepare_node,
    route_gate,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = [seg("def f(x):\n"), seg("    return BAD\n", LOW), seg("    return x\n```", [0.6] * 4, end=True),
          seg("def f(x):\n    return x + 1  # GOOD\n```", [0.6] * 4, end=True)]


def _graph(backend: ScriptedBackend, sandbox: ScriptedSandbox, **kw: Any) -> Any:
    return create_value_agent(backend, policy="value", sandbox=sandbox, gate_config=GATE, **kw)


async def test_hidden_tests_never_reach_nodes_model_or_sandbox() -> None:
    backend, sandbox = ScriptedBackend(SCRIPT), ScriptedSandbox()
    graph = _graph(backend, sandbox).compile(checkpointer=MemorySaver())
    cfg = {"configurable": {"thread_id": "hidden"}}
    # even a hidden test passed as an extra input key is dropped by the input schema
    inp = {**agent_input(TASK.public()), "test": TASK.test, "canonical_solution": TASK.canonical_solution}
    chunks = [c async for c in graph.astream(inp, cfg, stream_mode=["custom", "updates", "values"])]
    history = [s.values async for s in graph.aget_state_history(cfg)]
    seen = json.dumps([chunks, history], default=str) + repr(backend.requests) + repr(sandbox.programs)
    assert SENTINEL not in seen and TASK.test not in seen
    assert history[0]["used"]["test_runs"] >= 1  # the run did reach the sandbox


async def test_graph_refuses_tasks_carrying_hidden_tests() -> None:
    graph = _graph(ScriptedBackend(SCRIPT), ScriptedSandbox()).compile()
    with pytest.raises(ValueError, match=r"task\.public\(\)"):
        agent_input(TASK)
    for task in (TASK, TASK.to_dict()):
        with pytest.raises(ValueError, match="Hidden tests must never reach the agent"):
            await graph.ainvoke({"task": task})


async def test_checkpointed_state_is_plain_json() -> None:
    graph = _graph(ScriptedBackend(SCRIPT), ScriptedSandbox()).compile(checkpointer=MemorySaver())
    cfg = {"configurable": {"thread_id": "json"}}
    await graph.ainvoke(agent_input(TASK.public(), seed=3), cfg)
    snapshots = [s async for s in graph.aget_state_history(cfg)]
    assert len(snapshots) > 5
    for snap in snapshots:
        assert json.loads(json.dumps(snap.values, allow_nan=False)) == snap.values


async def test_stream_events_carry_every_reading() -> None:
    graph = _graph(ScriptedBackend(SCRIPT), ScriptedSandbox()).compile()
    events = [e async for e in graph.astream(agent_input(TASK.public()), stream_mode="custom")]
    out = await _graph(ScriptedBackend(SCRIPT), ScriptedSandbox()).compile().ainvoke(agent_input(TASK.public()))
    assert all(e["event"] == EVENT for e in events)
    readings = [e for e in events if e["kind"] != "backtrack"]
    assert [(e["kind"], e["decision"]) for e in readings] == [(r["kind"], r["decision"]) for r in out["trace"]]
    assert {"segment", "final", "tests", "backtrack"} <= {e["kind"] for e in events}


class Parent(TypedDict, total=False):
    task: dict[str, Any]
    seed: int
    completion: str
    trace: list[dict[str, Any]]
    note: str


async def test_agent_as_subgraph_streams_with_subgraphs_true() -> None:
    agent = _graph(ScriptedBackend(SCRIPT), ScriptedSandbox()).compile()
    parent = StateGraph(Parent)
    parent.add_node("agent", agent)
    parent.add_node("note", lambda s: {"note": f"{len(s['trace'])} readings"})
    parent.add_edge(START, "agent")
    parent.add_edge("agent", "note")
    parent.add_edge("note", END)
    app = parent.compile(checkpointer=MemorySaver())
    cfg = {"configurable": {"thread_id": "p"}}
    nested = [c async for c in app.astream(agent_input(TASK.public()), cfg, stream_mode="custom", subgraphs=True)]
    assert nested and all(ns and ns[0].startswith("agent") and e["event"] == EVENT for ns, e in nested)
    final = (await app.aget_state(cfg)).values
    assert "GOOD" in final["completion"] and final["note"].endswith("readings")


class MyState(AgentState, total=False):
    log: list[str]


async def test_gate_node_and_router_inside_a_user_graph() -> None:
    backend = ScriptedBackend(SCRIPT)
    settings = agent_settings("value", gate_config=GATE)
    write = make_generate_node(backend, settings)

    async def my_writer(state: MyState) -> dict[str, Any]:
        update = await write(state)
        return {**update, "log": [*state.get("log", []), "write"]}

    def my_checker(state: MyState) -> dict[str, Any]:
        return {"log": [*state["log"], "check"]}

    g = StateGraph(MyState)
    g.add_node("prepare", make_prepare_node(settings))
    g.add_node("write", my_writer)
    g.add_node("gate", make_gate_node(settings))
    g.add_node("backtrack", make_backtrack_node(settings))
    g.add_node("check", my_checker)
    g.add_node("publish", lambda s: {"completion": s["candidates"][-1]["code"]})
    g.add_edge(START, "prepare")
    g.add_edge("prepare", "write")
    g.add_edge("write", "gate")
    g.add_conditional_edges("gate", route_gate,
                            {"generate": "write", "backtrack": "backtrack", "run_tests": "check",
                             "finalize": "publish"})
    g.add_edge("backtrack", "write")
    g.add_edge("check", "publish")
    g.add_edge("publish", END)
    out = await g.compile(checkpointer=MemorySaver()).ainvoke(
        agent_input(TASK.public()), {"configurable": {"thread_id": "u"}})
    assert out["log"] == ["write", "write", "write", "check"]
    assert [r["decision"] for r in out["trace"]] == ["continue", "backtrack", "continue", "run_tests"]
    assert out["completion"] == "def f(x):\n    return x\n"


async def test_critic_reads_text_under_the_local_model() -> None:
    backend = ScriptedBackend([], score_value=lambda text: 0.9 if "+" in text else 0.1)
    critic = ValueCritic(backend, GateConfig(signal="value", accept_above=0.5))
    good = await critic.ascore("return a + b")
    bad = await critic.ascore_messages([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a-b"}])
    assert good.score == pytest.approx(0.9) and bad.score == pytest.approx(0.1)
    assert backend.scored[1] == (({"role": "user", "content": "q"},), "a-b")


def test_embedding_doc_runs_with_a_fake_backend(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (ROOT / "docs" / "embedding.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    runnable = [b for b in blocks if "load_backend(" not in b]
    assert len(runnable) == 3 and len(blocks) == 4

    def script(request: Any, i: int) -> Step:
        return seg("    return 0\n```", [0.9] * 4, end=True)

    module = types.ModuleType("embedding_doc")  # a real module: TypedDict hints resolve in its namespace
    monkeypatch.setitem(sys.modules, module.__name__, module)
    ns = module.__dict__
    ns["backend"] = ScriptedBackend(script, score_value=lambda t: 0.9 if "a + b" in t else 0.1)
    ns["sandbox"] = ScriptedSandbox()
    for block in runnable:
        exec(compile(block, "docs/embedding.md", "exec"), ns)  # noqa: S102 - our own documentation
    assert ns["subgraph_result"]["review"].startswith(("accept", "run_tests", "stop"))
    assert ns["own_result"]["log"][-1] == "published"
    assert ns["critic_result"]["critic_decision"] == "accept"
    assert ns["critic_result"]["answer"].endswith("a + b\n")
    assert [r["decision"] for r in ns["critic_result"]["critic_trace"]] == ["retry", "accept"]
    assert EVENT in capsys.readouterr().out


def test_graph_modules_import_without_loading_weights() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text())
    assert len(config["graphs"]) == 9  # the original eight and `agent`, every registered policy by config
    code = (
        "import importlib.util, sys, json\n"
        "for name, ref in json.load(open('langgraph.json'))['graphs'].items():\n"
        "    path = ref.split(':')[0]\n"
        "    spec = importlib.util.spec_from_file_location(name, path)\n"
        "    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "    assert hasattr(mod.graph, 'ainvoke'), name\n"
        "assert 'torch' not in sys.modules and 'valueagent.runtime.backend' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


async def test_critic_node_spends_its_retry_budget() -> None:
    from valueagent.agent import make_critic_node, route_critic

    critic = ValueCritic(ScriptedBackend([], score_value=0.1), GateConfig(signal="value", accept_above=0.5))
    node = make_critic_node(critic, text_key="answer", context_key=None, max_retries=1)
    state: dict[str, Any] = {"answer": "x = 1"}
    state.update(await node(state))
    assert route_critic(state) == "retry"
    state.update(await node(state))
    assert route_critic(state) == "exhausted" and len(state["critic_trace"]) == 2
    assert json.loads(json.dumps(state["critic_trace"])) == state["critic_trace"]
