"""Axis artifacts: round trip, refusal of a mismatched model, import of the paper's array format."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from valueagent.cli.main import app
from valueagent.runtime.artifact import AxisMismatchError, ValueAxis, load_axis, save_axis


def _axis(**kw) -> ValueAxis:
    rng = np.random.default_rng(0)
    base = dict(direction=rng.standard_normal(64).astype(np.float32), layer=2, model_id="org/tiny",
                hidden_size=64, num_layers=2, estimator="probe", residual_norm_mean=3.5,
                residual_norm_std=0.4, data_hash="abc", validation={"auroc": 0.7, "nested": {"x": [1, 2]}})
    base.update(kw)
    return ValueAxis(**base)


def test_round_trip_keeps_direction_and_metadata(tmp_path):
    ax = _axis(per_layer=np.ones((3, 64), np.float32))
    path = save_axis(ax, tmp_path / "a.safetensors")
    back = load_axis(path)
    np.testing.assert_array_equal(back.direction, ax.direction)
    np.testing.assert_array_equal(back.per_layer, ax.per_layer)
    assert back.metadata() == ax.metadata() and back.sha256 == ax.sha256
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["layer"] == 2 and sidecar["validation"]["nested"] == {"x": [1, 2]}


def test_mismatched_model_is_refused_with_a_fix():
    ax = _axis()
    with pytest.raises(AxisMismatchError, match="axis build"):
        ax.check_model("org/tiny", num_layers=3, hidden_size=64)
    with pytest.raises(AxisMismatchError, match="does not transfer"):
        ax.check_model("org/other", num_layers=2, hidden_size=64)
    ax.check_model("ORG/tiny", num_layers=2, hidden_size=64)


def test_reading_refuses_a_mismatched_axis(tiny_model, tiny_tokenizer):
    from valueagent.axis.reading import read_completions

    wrong = _axis(hidden_size=32, direction=np.ones(32, np.float32))
    with pytest.raises(AxisMismatchError, match="2 layers x 64"):
        read_completions(tiny_model, tiny_tokenizer, "org/tiny", wrong, [([{"role": "user", "content": "hi"}], "ok")])


def test_import_of_a_hidden_states_indexed_array(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.standard_normal((7, 16)).astype(np.float32)  # 6 layers + embeddings
    np.save(tmp_path / "value_axis.npy", arr)
    out = tmp_path / "x.safetensors"
    res = CliRunner().invoke(app, ["axis", "import", str(tmp_path / "value_axis.npy"), "--model", "org/m",
                                   "--layer", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    ax = load_axis(out)
    assert (ax.num_layers, ax.hidden_size, ax.layer, ax.model_id) == (6, 16, 4, "org/m")
    np.testing.assert_array_equal(ax.direction, arr[4])
    np.testing.assert_array_equal(ax.per_layer, arr)
    bad = CliRunner().invoke(app, ["axis", "import", str(tmp_path / "value_axis.npy"), "--model", "org/m",
                                   "--layer", "7", "--out", str(out)])
    assert bad.exit_code != 0 and "outside 1..6" in bad.output
    np.save(tmp_path / "flat.npy", arr[0])
    flat = CliRunner().invoke(app, ["axis", "import", str(tmp_path / "flat.npy"), "--model", "org/m"])
    assert flat.exit_code != 0 and "num_layers + 1" in flat.output


def test_one_axis_file_name_rule_for_shipped_built_and_imported_axes(tmp_path, monkeypatch) -> None:
    from valueagent.agent.shipped import expected_reading
    from valueagent.axis.build import default_out
    from valueagent.runtime.artifact import axis_file_name, shipped_axes_dir, shipped_axis_path

    model_id = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert axis_file_name(model_id) == "qwen--qwen2.5-coder-0.5b-instruct.safetensors"
    assert shipped_axis_path(model_id) == shipped_axes_dir() / axis_file_name(model_id)
    assert shipped_axis_path("no/such-model") is None
    reading = expected_reading("embedded", "default")  # what the gate's calibration lookup expects
    assert reading is not None and reading.axis_path == str(shipped_axis_path(model_id))
    monkeypatch.setenv("VALUEAGENT_CACHE", str(tmp_path))
    assert default_out(model_id).name == axis_file_name(model_id)
