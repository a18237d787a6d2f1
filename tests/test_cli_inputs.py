"""Every bad input of issue 18 gets one line naming it and the fix, exit 2, before any model loads,
and leaves every file as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from valueagent.cli import eval_cmd
from valueagent.cli.main import app

runner = CliRunner()
AXIS_1_5B = Path(__file__).resolve().parents[1] / "valueagent/data/axes/qwen--qwen2.5-coder-1.5b-instruct.safetensors"
GOOD = {"task_id": "t/0", "prompt": "def f():\n", "entry_point": "f", "test": "def check(f):\n    pass\n"}


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A working folder with input files and an earlier run; loading a model is recorded and refused."""
    monkeypatch.chdir(tmp_path)
    loads: list[str] = []

    def no_model(*args: Any, **kwargs: Any) -> Any:
        loads.append("model")
        raise AssertionError("a model was loaded before the inputs were checked")

    import valueagent.runtime.backend
    import valueagent.runtime.loading

    monkeypatch.setattr(valueagent.runtime.backend, "load_backend", no_model)
    monkeypatch.setattr(valueagent.runtime.loading, "load_model", no_model)
    monkeypatch.setattr(eval_cmd, "make_backend", no_model)
    (tmp_path / "good.jsonl").write_text(json.dumps(GOOD) + "\n")
    (tmp_path / "malformed.jsonl").write_text(json.dumps(GOOD) + "\n{not json\n")
    missing = {k: v for k, v in GOOD.items() if k != "test"}
    (tmp_path / "missing.jsonl").write_text("\n" + json.dumps(missing) + "\n")
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "garbage.safetensors").write_bytes(b"\xff" * 8 + b"garbage, not an axis")
    (tmp_path / "garbage-gate.json").write_text("<html>not json</html>")
    (tmp_path / "a-file").write_text("I am a file\n")
    (tmp_path / "completions.jsonl").write_text('{"id": 1, "prompt": "p", "completion": "c"}\n')
    for data in ("tasks/episodes", "tasks/distinctions", "tasks/synthetic_code"):  # axis build's default paths
        (tmp_path / data).mkdir(parents=True)
    (tmp_path / "tasks/synthetic_code/tasks.jsonl").write_text(json.dumps(GOOD) + "\n")
    (tmp_path / "old-run").mkdir()
    (tmp_path / "old-run" / "results.jsonl").write_text('{"task_id": "t/0", "policy": "single"}\n')
    (tmp_path / "old-run" / "config.json").write_text('{"created": "earlier"}\n')
    return {"root": tmp_path, "loads": loads}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


RUN = ["run", "good.jsonl", "--policy", "single"]
EVAL = ["eval", "humaneval", "--policies", "single", "--limit", "1", "--output-dir", "new-run"]

CASES: list[tuple[str, list[str], list[str]]] = [
    ("malformed task line", ["run", "malformed.jsonl"], ["malformed.jsonl:2", "not valid JSON", "fix that line"]),
    ("missing field", ["run", "missing.jsonl"], ["missing.jsonl:2", "missing field 'test'"]),
    ("empty task file", ["run", "empty.jsonl"], ["empty.jsonl has no tasks", "one JSON task per line"]),
    ("no task file", ["run", "nowhere.jsonl"], ["nowhere.jsonl", "HumanEval-schema"]),
    ("run split", ["run", "humaneval", "--split", "evl"], ["--split 'evl'", "eval, calibration, all"]),
    ("eval split", [*EVAL, "--split", "evl"], ["--split 'evl'", "eval, calibration, all"]),
    ("run mbpp split", ["run", "mbpp", "--split", "tset"], ["--split 'tset'", "mbpp", "test, validation, train"]),
    ("eval mbpp split", ["eval", "mbpp", "--split", "eval", "--policies", "single"], ["--split 'eval'", "mbpp"]),
    ("bank build split", ["bank", "build", "mbpp", "--split", "dev", "-o", "bank"], ["--split 'dev'", "mbpp"]),
    ("mbpp id outside split", ["run", "mbpp", "--split", "test", "--task-ids", "Mbpp/700"],
     ["Mbpp/700", "mbpp --split test"]),
    ("eval mbpp id outside split", ["eval", "mbpp", "--task-ids", "Mbpp/2", "--policies", "single"],
     ["Mbpp/2", "'test' split"]),
    ("axis of another model", [*RUN, "--axis", str(AXIS_1_5B)], ["made for Qwen/Qwen2.5-Coder-1.5B-Instruct",
                                                                "not Qwen/Qwen2.5-Coder-0.5B-Instruct"]),
    ("axis score, axis of another model", ["axis", "score", "completions.jsonl", "--axis", str(AXIS_1_5B)],
     ["made for Qwen/Qwen2.5-Coder-1.5B-Instruct"]),
    ("run axis", [*RUN, "--axis", "garbage.safetensors"], ["--axis garbage.safetensors", "axis build"]),
    ("no head ships for the 1.5B", ["model", "info", "--model", "embedded-1.5b", "--axis", "head"],
     ["--axis head", "no value head is shipped for Qwen/Qwen2.5-Coder-1.5B-Instruct", "--export-axis"]),
    ("eval axis", [*EVAL, "--axis", "garbage.safetensors"], ["--axis garbage.safetensors", "axis build"]),
    ("generate axis", ["generate", "hi", "--axis", "garbage.safetensors"], ["--axis garbage.safetensors"]),
    ("model info axis", ["model", "info", "--axis", "garbage.safetensors"], ["--axis garbage.safetensors"]),
    ("run gate config", [*RUN, "--gate-config", "garbage-gate.json"],
     ["--gate-config garbage-gate.json is not JSON", "valueagent calibrate"]),
    ("eval gate config", [*EVAL, "--gate-config", "garbage-gate.json"],
     ["--gate-config garbage-gate.json is not JSON", "valueagent calibrate"]),
    ("run output dir is a file", [*RUN, "--output-dir", "a-file"], ["--output-dir a-file", "is a file"]),
    ("eval output dir is a file", [*EVAL[:-2], "--output-dir", "a-file/run"], ["a-file is a file"]),
    ("run over results", [*RUN, "--output-dir", "old-run"], ["already has results", "--resume"]),
    ("eval over results", [*EVAL[:-2], "--output-dir", "old-run"], ["already has results", "--resume"]),
    ("run policy", [*RUN[:2], "--policy", "valu"], ["--policy: unknown policy valu", "choose from"]),
    ("eval policies", [*EVAL[:2], "--policies", "single,nope"], ["--policies: unknown policy nope"]),
    ("eval check", [*EVAL, "--fail-under", "0.5", "--check", "nope"], ["--check: unknown policy nope"]),
    ("axis eval axis", ["axis", "eval", "--axis", "garbage.safetensors"], ["--axis garbage.safetensors"]),
    ("axis score axis", ["axis", "score", "completions.jsonl", "--axis", "garbage.safetensors"],
     ["--axis garbage.safetensors"]),
    ("axis compare axis", ["axis", "compare", "completions.jsonl", "--model-a", "a", "--model-b", "b",
                           "--axis-b", "garbage.safetensors"], ["--axis-b garbage.safetensors"]),
    ("axis eval data", ["axis", "eval", "--tasks", "nowhere.jsonl"], ["--tasks nowhere.jsonl: not found"]),
    ("axis build work dir", ["axis", "build", "--work-dir", "a-file/cache"], ["--work-dir", "a-file is a file"]),
    ("steer 50", ["generate", "hi", "--steer", "50"], ["--steer 50", "±1", "fraction"]),
    ("steer nan", ["generate", "hi", "--steer", "nan"], ["--steer nan", "not a finite number"]),
    ("steer -inf", ["generate", "hi", "--steer", "-inf"], ["--steer -inf", "not a finite number"]),
    ("run engine", [*RUN, "--backend", "vllm"], ["--backend vllm", "auto, llama, hf"]),
    ("eval llama with int8", [*EVAL, "--backend", "llama", "--quantize", "int8"],
     ["--quantize applies to the transformers path", "--backend hf"]),
    ("model info llama of a hub id", ["model", "info", "--model", "Qwen/Qwen3-8B", "--backend", "llama"],
     ["--backend llama runs GGUF files", "--model Qwen/Qwen3-8B"]),
    ("bank build hf of a gguf", ["bank", "build", "humaneval", "-o", "bank", "--model", "x.gguf", "--backend", "hf"],
     ["x.gguf is a GGUF file", "--backend llama"]),
    ("engine of a server", ["model", "info", "--model", "http://127.0.0.1:9", "--backend", "llama"],
     ["--backend llama applies to local models"]),
]


@pytest.mark.parametrize(("args", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_before_the_model(work: dict[str, Any], args: list[str], expected: list[str]) -> None:
    before = _snapshot(work["root"])
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for part in expected:
        assert part in lines[0]
    assert "Traceback" not in res.output
    assert work["loads"] == []
    assert _snapshot(work["root"]) == before, "a refused command changed or wrote files"


def test_debug_shows_the_traceback_behind_the_line(work: dict[str, Any]) -> None:
    res = runner.invoke(app, ["--debug", *RUN, "--axis", "garbage.safetensors"])
    assert res.exit_code == 2
    assert "Traceback" in res.output and res.output.rstrip().splitlines()[-1].startswith("error: --axis")


def test_an_unexpected_error_is_one_line_unless_debugging(work: dict[str, Any]) -> None:
    res = runner.invoke(app, [*RUN, "--output-dir", "new"])  # good inputs: the (refused) model load is reached
    assert res.exit_code == 1 and work["loads"] == ["model"]
    assert res.output.strip().splitlines() == [
        "error: AssertionError: a model was loaded before the inputs were checked (unexpected: rerun with "
        "--debug for the traceback, and report it)"]
    res = runner.invoke(app, ["--debug", *RUN, "--output-dir", "new"])
    assert isinstance(res.exception, AssertionError)
