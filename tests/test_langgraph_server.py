"""LangGraph's own local server (`langgraph dev`, from langgraph-cli[inmem]) serves the graphs of
``langgraph.json``, and one of them runs through ``langgraph-sdk`` on the tiny random Qwen3.

The server runs on loopback, without a browser, a tunnel, reloading or analytics, in a scratch folder
holding a copy of ``langgraph.json`` and a link to ``graphs/`` (it keeps its state in ``.langgraph_api``
under the folder it starts in, which must not be the repository). The graphs load their model lazily from
``VALUEAGENT_MODEL``: here a directory the test saves the tiny model into, with no axis, and uncalibrated
(the gated graphs are built at startup and have no shipped calibration for a model without an axis).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import build_tiny_qwen3, build_tiny_tokenizer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
GRAPHS: dict[str, str] = json.loads((ROOT / "langgraph.json").read_text())["graphs"]
LANGGRAPH = Path(sys.executable).parent / "langgraph"
TASK = {"task_id": "tiny/add", "prompt": 'def add(a, b):\n    """Return a + b."""\n', "entry_point": "add",
        "visible_tests": []}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-qwen3")
    build_tiny_qwen3().save_pretrained(path)
    build_tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[str]:
    assert LANGGRAPH.exists(), "langgraph-cli[inmem] is missing: pip install -e '.[dev]' (the langgraph extra)"
    folder = tmp_path_factory.mktemp("langgraph-dev")
    shutil.copy(ROOT / "langgraph.json", folder / "langgraph.json")
    (folder / "graphs").symlink_to(ROOT / "graphs")
    port = _free_port()
    env = {**os.environ, "VALUEAGENT_MODEL": str(model_dir), "VALUEAGENT_AXIS": "none",
           "VALUEAGENT_UNCALIBRATED": "1", "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false"}
    env.pop("VALUEAGENT_GATE_CONFIG", None)
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen(
        [str(LANGGRAPH), "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, folder / "server.log")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and anything it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the server answers /ok; fails at once if it exits (its log says why). The 300 s guard
    only turns a hang into a failure."""
    for _ in range(3000):
        if proc.poll() is not None:
            pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url + "/ok", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"langgraph dev did not answer /ok:\n{log.read_text()[-4000:]}")


def test_the_server_lists_every_graph_of_langgraph_json(server: str) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    assistants = {a["graph_id"]: a["assistant_id"] for a in client.assistants.search(limit=100)}
    assert set(assistants) == set(GRAPHS)
    for graph_id, assistant_id in assistants.items():  # what Studio asks of each graph
        schemas = client.assistants.get_schemas(assistant_id)
        assert set(schemas["input_schema"]["properties"]) == {"task", "seed"}, graph_id
        assert {"completion", "stop_reason"} <= set(schemas["output_schema"]["properties"]), graph_id


def test_a_graph_run_through_the_sdk_is_the_in_process_run(server: str, model_dir: Path) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    served: Any = client.runs.wait(None, "single", input={"task": TASK, "seed": 0})
    assert served["task_id"] == TASK["task_id"] and served["stop_reason"].startswith("accept")
    assert served["used"]["tokens"] > 0 and served["trace"][-1]["kind"] == "final"
    assert "test" not in served and "canonical_solution" not in json.dumps(served)

    from valueagent.agent import create_value_agent
    from valueagent.runtime.backend import load_backend

    backend = load_backend(str(model_dir), axis=None)
    try:
        graph = create_value_agent(backend, policy="single").compile()
        local = asyncio.run(graph.ainvoke({"task": TASK, "seed": 0}))
    finally:
        asyncio.run(backend.aclose())
    # The server only transports the run: same tokens, same completion, same record.
    for key in ("completion", "code", "stop_reason", "used", "trace"):
        assert served[key] == json.loads(json.dumps(local[key])), key
