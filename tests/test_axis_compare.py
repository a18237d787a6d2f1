"""`axis score` and `axis compare` on tiny local checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from valueagent.cli.main import app
from valueagent.runtime.artifact import ValueAxis, save_axis

ROWS = [
    {"id": "a", "prompt": "Write a function that returns the sum of a list.",
     "completion": "def add(a, b):\n    return a + b\n"},
    {"id": "b", "prompt": "Say something.", "completion": "The quick brown fox jumps over the lazy dog."},
    {"id": "c", "prompt": "Check it.", "completion": "I am confident this is correct."},
]


def _checkpoint(path: Path, seed: int, tokenizer) -> Path:
    from tests.conftest import build_tiny_qwen3

    build_tiny_qwen3(seed=seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _axis(model_dir: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    ax = ValueAxis(direction=rng.standard_normal(64).astype(np.float32), layer=1,
                   model_id=str(model_dir.resolve()), hidden_size=64, num_layers=2, estimator="test")
    return save_axis(ax, model_dir.parent / f"{model_dir.name}-axis.safetensors")


@pytest.fixture
def setup(tmp_path, tiny_tokenizer):
    a = _checkpoint(tmp_path / "a", 0, tiny_tokenizer)
    b = _checkpoint(tmp_path / "b", 1, tiny_tokenizer)
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return a, b, data


def test_score_one_line_per_input(setup):
    a, _, data = setup
    res = CliRunner().invoke(app, ["axis", "score", str(data), "--model", str(a), "--axis", str(_axis(a)),
                                   "--dtype", "float32", "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert [x["id"] for x in lines] == ["a", "b", "c"]
    assert all(-1 <= x["value"] <= 1 and x["n_tokens"] > 0 for x in lines)


def test_score_refuses_an_axis_of_another_model(setup):
    a, b, data = setup
    res = CliRunner().invoke(app, ["axis", "score", str(data), "--model", str(a), "--axis", str(_axis(b)),
                                   "--dtype", "float32"])
    assert res.exit_code != 0 and "does not transfer" in res.output


def test_compare_same_model_has_zero_shift_and_other_model_an_interval(setup):
    a, b, data = setup
    ax_a, ax_b = str(_axis(a)), str(_axis(b))
    same = CliRunner().invoke(app, ["axis", "compare", str(data), "--model-a", str(a), "--model-b", str(a),
                                    "--axis-a", ax_a, "--axis-b", ax_a, "--dtype", "float32", "--json"])
    assert same.exit_code == 0, same.output
    out = json.loads(same.stdout.splitlines()[-1])
    assert out["n"] == 3 and abs(out["value_shift"]["mean"]) < 1e-6
    diff = CliRunner().invoke(app, ["axis", "compare", str(data), "--model-a", str(a), "--model-b", str(b),
                                    "--axis-a", ax_a, "--axis-b", ax_b, "--dtype", "float32", "--json"])
    assert diff.exit_code == 0, diff.output
    s = json.loads(diff.stdout.splitlines()[-1])["value_shift"]
    assert s["lo"] <= s["mean"] <= s["hi"] and s["mean"] != 0
