"""What a backend can do is in its ModelInfo (axis, per-token values, steering, the weights' precision), in
every run's config, and a policy that needs the value reading refuses a backend without an axis, in one
line and before any task runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from tests.conftest import build_tiny_qwen3
from tests.test_backend import make_axis
from valueagent.cli import checks
from valueagent.cli.main import app
from valueagent.eval.config import model_record
from valueagent.runtime import embedded
from valueagent.runtime.backend import HFBackend
from valueagent.runtime.generation import ModelInfo
from valueagent.runtime.loading import describe_weights, load_model

runner = CliRunner()
TASK = {"task_id": "t/0", "prompt": "def f():\n", "entry_point": "f", "test": "def check(f):\n    pass\n"}


@pytest.fixture
def bf16_dir(tmp_path: Path, tiny_tokenizer) -> Path:  # type: ignore[no-untyped-def]
    """A tiny random Qwen3 stored in bfloat16, with no value axis anywhere."""
    path = tmp_path / "tiny-bf16"
    build_tiny_qwen3(dtype=torch.bfloat16).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def _info(**kw: object) -> ModelInfo:
    base: dict[str, object] = {"model_id": "tiny", "revision": None, "num_layers": 2, "hidden_size": 64,
                               "dtype": "float32", "device": "cpu", "axis": None, "axis_layer": None}
    return ModelInfo(**(base | kw))  # type: ignore[arg-type]


def test_info_says_what_the_backend_can_do(tiny_model, tiny_tokenizer):
    bare = HFBackend(tiny_model, tiny_tokenizer, model_id="tiny")
    with_axis = HFBackend(tiny_model, tiny_tokenizer, model_id="tiny", axis=make_axis(tiny_model))
    try:
        info = bare.info()
        assert (info.has_axis, info.per_token_values, info.steering) == (False, False, False)
        assert info.weights == info.dtype == "float32"  # handed over in memory: its dtype is all that is known
        info = with_axis.info()
        assert (info.has_axis, info.per_token_values, info.steering) == (True, True, True)
        record = model_record(with_axis)  # what every run's config.json holds
        assert {k: record[k] for k in ("weights", "has_axis", "per_token_values", "steering")} == {
            "weights": "float32", "has_axis": True, "per_token_values": True, "steering": True}
    finally:
        bare.close()
        with_axis.close()


def test_weights_say_the_stored_precision_beside_the_arithmetic(bf16_dir):
    loaded = load_model(str(bf16_dir), dtype="float32")
    assert (loaded.dtype, loaded.weights) == ("float32", "bfloat16")
    assert describe_weights("x", revision=None, gguf_type="Q4_K_M", dtype="float32",
                            quantize=None) == "Q4_K_M GGUF, dequantized at load"
    assert describe_weights(bf16_dir, revision=None, gguf_type=None, dtype="float32",
                            quantize="int8") == "int8 linear layers (quantized at load from bfloat16)"
    assert describe_weights(bf16_dir / "nowhere", revision=None, gguf_type=None, dtype="float32",
                            quantize=None) == "float32"  # the checkpoint does not say: the loaded dtype


def test_an_embedded_cache_says_its_weights_are_a_dequantized_gguf(bf16_dir):
    """A directory converted from the embedded GGUF (its marker names the source) reports Q4_K_M weights,
    whatever dtype the converted copy is stored and computed in."""
    marker = {"model_id": embedded.EMBEDDED.model_id, "source_sha256": embedded.EMBEDDED.sha256}
    (bf16_dir / embedded.MARKER_NAME).write_text(json.dumps(marker))
    loaded = load_model(str(bf16_dir), dtype="float32")
    assert loaded.weights == "Q4_K_M GGUF, dequantized at load" and loaded.dtype == "float32"
    assert all(source.weights == "Q4_K_M" for source in embedded.SOURCES.values())


def test_policies_that_read_the_value_refuse_a_backend_without_an_axis(capsys):
    no_axis = _info()
    checks.axis_reading(("single", "always-test", "random-gate", "logprob-gate"), no_axis, model="tiny")
    for names in (("value",), ("always-test", "value+logprob"), ("steer-high",), ("steer-low",)):
        with pytest.raises(typer.Exit) as exc:
            checks.axis_reading(names, no_axis, model="Qwen/Qwen3-8B")
        assert exc.value.exit_code == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert "valueagent axis build --model Qwen/Qwen3-8B" in line and "valueagent axis import" in line
    checks.axis_reading(("value", "steer-high"), _info(axis="a", axis_layer=1, has_axis=True), model="tiny")
    with pytest.raises(typer.Exit):  # a server without an axis: the axis goes on the server
        checks.axis_reading(("value",), no_axis, model="http://127.0.0.1:9")
    assert "restart `valueagent serve` with --axis PATH" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "eval"])
def test_run_and_eval_refuse_before_any_task(command, bf16_dir, tmp_path, monkeypatch):
    """Before this check, `--policy value` on a model without an axis silently ran as always-test."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tasks.jsonl").write_text(json.dumps(TASK) + "\n")
    out = tmp_path / "out"
    args = (["run", "tasks.jsonl", "--policy", "single,value"] if command == "run"
            else ["eval", "humaneval", "--policies", "single,value", "--limit", "1"])
    res = runner.invoke(app, [*args, "--model", str(bf16_dir), "--uncalibrated", "--output-dir", str(out)])
    assert res.exit_code == 2, res.output
    assert "value needs the value reading" in res.output and "valueagent axis build" in res.output
    assert not out.exists()  # no config, no records: nothing ran
