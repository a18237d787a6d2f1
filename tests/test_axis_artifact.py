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


def test_a_linear_read_head_round_trips_as_schema_2_and_a_cosine_axis_keeps_schema_1(tmp_path):
    cos = _axis()
    assert cos.metadata()["schema_version"] == 1 and "reading" not in cos.metadata()  # old readers still read it
    head = _axis(reading="linear", bias=-1.5, estimator="supervised-probe")
    back = load_axis(save_axis(head, tmp_path / "h.safetensors"))
    assert (back.reading, back.bias, back.metadata()["schema_version"]) == ("linear", -1.5, 2)
    assert back.sha256 == head.sha256 != cos.sha256  # same direction and layer, another reading
    np.testing.assert_allclose(back.reading_vector(), head.direction)
    np.testing.assert_allclose(np.linalg.norm(cos.reading_vector()), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="reading 'sigmoid'"):
        _axis(reading="sigmoid")
    with pytest.raises(ValueError, match="cosine-read axis"):
        _axis(bias=0.5)
    meta = {**back.metadata(), "schema_version": 3}
    from safetensors.numpy import save_file

    save_file({"direction": head.direction}, str(tmp_path / "new.safetensors"),
              metadata={"valueagent": json.dumps(meta)})
    with pytest.raises(ValueError, match="schema 3.*upgrade valueagent"):
        load_axis(tmp_path / "new.safetensors")


def test_axis_score_reads_a_head_as_the_live_backend_does(tiny_model, tiny_tokenizer):
    """`axis score` (teacher-forced, from the span's mean residual) and the backend's own per-token reading agree,
    for a cosine axis and a linear head alike."""
    from valueagent.axis.reading import read_completions
    from valueagent.runtime.backend import HFBackend

    msgs = [{"role": "user", "content": "Write a function that adds two numbers."}]
    code = "def add(a, b):\n    return a + b\n"
    for ax in (_axis(layer=1), _axis(layer=1, reading="linear", bias=0.3)):
        [r] = read_completions(tiny_model, tiny_tokenizer, "org/tiny", ax, [(msgs, code)], progress=None)
        assert r is not None
        backend = HFBackend(tiny_model, tiny_tokenizer, model_id="org/tiny", axis=ax, prefix_cache_mb=0)
        try:
            live = backend.score_sync(msgs, code)
        finally:
            backend.close()
        assert r.n_tokens == len(live.values)
        assert r.value == pytest.approx(float(np.mean(live.values)), rel=1e-3, abs=1e-4)


def test_axis_eval_refuses_a_linear_head_before_the_model_loads(tmp_path):
    path = save_axis(_axis(reading="linear", bias=0.1, estimator="supervised-probe"), tmp_path / "h.safetensors")
    res = CliRunner().invoke(app, ["axis", "eval", "--axis", str(path), "--model", str(tmp_path / "no-model")])
    assert res.exit_code == 2 and "cosine-read axis" in res.output and "bank heads" in res.output
    assert len(res.output.strip().splitlines()) == 1
