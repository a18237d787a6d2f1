"""Every graph in ``langgraph.json`` describes itself: LangGraph's server and Studio call these schemas."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

ROOT = Path(__file__).resolve().parents[1]
GRAPHS: dict[str, str] = json.loads((ROOT / "langgraph.json").read_text())["graphs"]


def _load(name: str, ref: str) -> Any:
    path, attr = ref.split(":")
    spec = importlib.util.spec_from_file_location(f"langgraph_json_{name}", ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attr)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_compiles_and_yields_json_schemas(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VALUEAGENT_GATE_CONFIG", raising=False)
    graph = _load(name, GRAPHS[name])
    schema_in = graph.get_input_jsonschema()
    schema_out = graph.get_output_jsonschema()
    json.dumps(schema_in), json.dumps(schema_out)  # plain JSON, as the server sends it
    assert set(schema_in["properties"]) == {"task", "seed"}
    task = schema_in["$defs"]["PublicTaskDict"]
    assert set(task["required"]) == {"task_id", "prompt", "entry_point", "visible_tests"}
    assert "test" not in task["properties"] and "canonical_solution" not in task["properties"]
    assert {"completion", "code", "trace", "stop_reason"} <= set(schema_out["properties"])
    backend = _shared_backend()
    assert backend is None or backend._backend is None, "describing a graph must not load the model"


def _shared_backend() -> Any:
    from valueagent.agent.lazy import _SHARED

    return _SHARED.get("default")


def test_every_state_typed_dict_has_a_pydantic_schema() -> None:
    from valueagent.agent.critic import CriticState
    from valueagent.agent.state import AgentInput, AgentOutput, AgentState

    for cls in (AgentInput, AgentOutput, AgentState, CriticState):
        schema = TypeAdapter(cls).json_schema()
        assert schema["type"] == "object" and schema["properties"], cls.__name__
