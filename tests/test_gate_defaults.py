"""Calibrated by default: a gated policy reads the thresholds shipped with its axis, refuses to start when
none ship for its reading (before any model loads), and runs untuned only when asked (``--uncalibrated``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.fakes import ScriptedBackend, ScriptedSandbox, Step
from valueagent.agent.shipped import (
    Reading,
    calibration_for,
    calibrations_for,
    expected_reading,
    shipped_calibrations,
)
from valueagent.cli import eval_cmd
from valueagent.cli.main import app
from valueagent.runtime.artifact import load_axis, shipped_axis_path
from valueagent.runtime.generation import GenerationRequest, ModelInfo

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_ID = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
runner = CliRunner()


def test_every_shipped_calibration_is_of_a_shipped_axis() -> None:
    found = shipped_calibrations()
    assert {c.variant for c in found} >= {"default", "skip-repeats"}
    for cal in found:
        assert cal.model_id is not None and cal.axis_sha256 is not None, cal.path
        axis_path = shipped_axis_path(cal.model_id)
        assert axis_path is not None, f"{cal.path} calibrates an axis the package does not ship"
        axis = load_axis(axis_path)
        doc = json.loads(cal.path.read_text())
        assert (axis.sha256, axis.layer) == (cal.axis_sha256, doc["reading"]["axis_layer"])


def test_the_default_of_a_reading_comes_first_and_other_readings_find_none() -> None:
    reading = expected_reading("embedded", "default")
    assert reading is not None and reading.model_id == EMBEDDED_ID
    assert [c.variant for c in calibrations_for(reading)][0] == "default"
    assert calibration_for(reading, "skip-repeats") is not None
    assert calibrations_for(Reading(model_id=EMBEDDED_ID, axis_sha256="0" * 64, axis_layer=5, axis_path=None)) == ()
    assert expected_reading("embedded", "none") == Reading(model_id=EMBEDDED_ID, axis_sha256=None, axis_layer=None,
                                                           axis_path=None)
    assert expected_reading("http://127.0.0.1:9", "default") is None  # a server tells once connected


def test_the_committed_comparison_paths_still_name_the_shipped_files() -> None:
    for name, variant in (("embedded-gate.json", "with-repeats"), ("embedded-gate-skip-repeats.json", "skip-repeats")):
        path = ROOT / "evals" / "calibration" / name
        reading = expected_reading("embedded", "default")
        assert reading is not None
        shipped = calibration_for(reading, variant)
        assert shipped is not None and path.resolve() == shipped.path.resolve()


class _Embedded(ScriptedBackend):
    """A scripted backend that reports the embedded model's reading (the shipped axis)."""

    def info(self) -> ModelInfo:
        from dataclasses import replace

        axis = load_axis(shipped_axis_path(EMBEDDED_ID))  # type: ignore[arg-type]
        return replace(super().info(), model_id=EMBEDDED_ID, num_layers=24, hidden_size=896, axis="default",
                       axis_layer=axis.layer, axis_sha256=axis.sha256)


def _step(request: GenerationRequest, i: int) -> Step:
    return Step("def f():\n    return 1\n```", [0.5] * 6, [-0.1] * 6, "stop")


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    made: dict[str, Any] = {}

    def backend(*args: Any) -> ScriptedBackend:
        made["backend"] = _Embedded(_step)
        return made["backend"]

    monkeypatch.setattr(eval_cmd, "make_backend", backend)
    monkeypatch.setattr(eval_cmd, "make_sandbox", lambda workers: ScriptedSandbox(lambda program: True))
    return made


def _eval(out: Path, *extra: str) -> Any:
    return runner.invoke(app, ["eval", "humaneval", "--policies", "single,value", "--limit", "1", "--output-dir",
                               str(out), "--n-boot", "200", *extra])


def test_eval_uses_the_calibration_shipped_with_the_axis(tmp_path: Path, fakes: dict[str, Any]) -> None:
    res = _eval(tmp_path / "run")
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["gate_config"]["calibrated"] and cfg["gate_config"]["path"].endswith(".gate.json")
    default = json.loads(Path(cfg["gate_config"]["path"]).read_text())["policies"]["value"]
    assert cfg["gate_config"]["policies"]["value"]["backtrack_below"] == default["backtrack_below"]
    res = _eval(tmp_path / "skip", "--gate-config", "skip-repeats")  # a shipped variant, by name
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "skip" / "config.json").read_text())
    assert cfg["gate_config"]["policies"]["value"]["skip_repeat_backtracks"] is True
    res = _eval(tmp_path / "none", "--uncalibrated")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "none" / "config.json").read_text())["gate_config"]["calibrated"] is False


def test_no_calibration_for_the_reading_refuses_before_the_model_loads(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    monkeypatch.setattr(eval_cmd, "make_backend", lambda *a: loads.append("model"))
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    for args in (["--model", str(model_dir)], ["--axis", "none"]):
        res = _eval(tmp_path / "run", *args)
        assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
        assert "valueagent calibrate" in res.output and "--uncalibrated" in res.output
    res = _eval(tmp_path / "run", "--gate-config", "no-such-variant")
    assert res.exit_code == 2 and "default, skip-repeats" in res.output
    res = _eval(tmp_path / "run", "--gate-config", str(ROOT / "evals/calibration/embedded-gate.json"),
                "--model", "embedded-1.5b")
    assert res.exit_code == 2 and "calibrated on another reading" in res.output
    res = _eval(tmp_path / "run", "--gate-config", "x.json", "--uncalibrated")
    assert res.exit_code == 2 and "contradict" in res.output
    assert not loads and not (tmp_path / "run").exists()


def test_langgraph_graphs_use_the_shipped_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    from valueagent.agent.lazy import LazyBackend, gate_config_for

    monkeypatch.delenv("VALUEAGENT_GATE_CONFIG", raising=False)
    monkeypatch.delenv("VALUEAGENT_UNCALIBRATED", raising=False)
    config = gate_config_for("value", LazyBackend("embedded", "default"))
    assert config is not None and config.calibrated and config.backtrack_below is not None
    assert gate_config_for("single", LazyBackend("embedded", "default")) is None
    with pytest.raises(ValueError, match="VALUEAGENT_UNCALIBRATED"):
        gate_config_for("value", LazyBackend("embedded", "none"))
    monkeypatch.setenv("VALUEAGENT_UNCALIBRATED", "1")
    assert gate_config_for("value", LazyBackend("embedded", "none")) is None


def test_the_1_5b_model_finds_its_own_shipped_calibration_before_loading() -> None:
    """`--model embedded-1.5b` runs gated policies on the calibration made from the 1.5B's own drafts
    (evals/calibration/embedded-1.5b/), never the 0.5B's, chosen before any weights load."""
    from valueagent.cli import gates

    choice = gates.choose(None, ["value", "logprob-gate"], model="embedded-1.5b", axis="default",
                          uncalibrated=False)
    assert choice.document is not None
    assert choice.document["reading"]["model_id"] == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    assert choice.configs["value"].skip_repeat_backtracks and choice.configs["value"].accept_above is not None
    committed = json.loads((ROOT / "evals/calibration/embedded-1.5b/gate.json").read_text())
    assert {p: choice.document["policies"][p] for p in committed["policies"]} == committed["policies"]


def test_the_shipped_defaults_are_repeat_free_and_carry_the_search_thresholds() -> None:
    """Issue 24 item 9: `run --policy value-seq` on the default model needs no flag, and the 0.5B default no
    longer redraws what a backtrack dropped; the committed runs' calibration ships as `with-repeats`."""
    import subprocess
    import sys

    from valueagent.cli import gates

    for model in ("embedded", "embedded-1.5b"):
        choice = gates.choose(None, ["value", "value-seq", "probe-rank", "value-stop"], model=model, axis="default",
                              uncalibrated=False)
        assert choice.shipped == "default" and choice.configs["value"].skip_repeat_backtracks
        assert choice.configs["value-seq"].search and choice.configs["probe-rank"].search["fitted"]
    reading = expected_reading("embedded", "default")
    assert reading is not None
    old = calibration_for(reading, "with-repeats")
    assert old is not None and not json.loads(old.path.read_text())["policies"]["value"]["skip_repeat_backtracks"]
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "ship_gate_defaults.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
