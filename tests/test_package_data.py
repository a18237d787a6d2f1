"""The package carries the data its commands read, and `axis build` writes where the user says (or a user
cache), never over a shipped axis or an earlier report unless asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from valueagent.axis.build import BuildConfig, check_outputs, default_out, default_report_dir
from valueagent.axis.datasets import load_data, shipped_data
from valueagent.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "valueagent"
runner = CliRunner()


def test_the_axis_data_ships_in_the_package_and_tasks_links_to_it() -> None:
    episodes, distinctions, tasks = shipped_data()
    for path in (episodes, distinctions, tasks):
        assert path.resolve().is_relative_to(PACKAGE.resolve()) and path.exists(), path
    for name in ("episodes.jsonl", "contrasts.jsonl", "criteria.jsonl", "manifest.json", "README.md"):
        assert (episodes / name).is_file(), name
    for name in ("code_pairs.jsonl", "confidence.jsonl", "backtracking.jsonl", "manifest.json"):
        assert (distinctions / name).is_file(), name
    for name in ("episodes", "distinctions", "synthetic_code"):  # the recipes' READMEs write here
        assert (ROOT / "tasks" / name).resolve() == (PACKAGE / "data" / name).resolve()
    cfg = BuildConfig()
    assert (cfg.episodes_dir, cfg.distinctions_dir, cfg.tasks_path) == tuple(map(str, shipped_data()))
    data = load_data(cfg.episodes_dir, cfg.distinctions_dir, cfg.tasks_path)
    assert data.episodes and data.contrasts and data.code_pairs and data.tasks


def test_the_embedded_model_ships_its_value_head_beside_its_axis() -> None:
    """`--axis head`: the supervised probe exported by `bank heads` (issue 26), shipped as package data for the
    0.5B; a model without one gets an error naming how to make one, never the contrastive axis instead."""
    from valueagent.runtime.artifact import axis_path, load_axis, resolve_axis
    from valueagent.runtime.embedded import EMBEDDED_1P5B, EMBEDDED_MODEL_ID

    path = axis_path(EMBEDDED_MODEL_ID, "head")
    assert path is not None and path.resolve().is_relative_to(PACKAGE.resolve())
    head, name = resolve_axis(EMBEDDED_MODEL_ID, "head")
    contrastive, _ = resolve_axis(EMBEDDED_MODEL_ID, "default")
    assert head is not None and contrastive is not None and name == f"head:{EMBEDDED_MODEL_ID}"
    assert head.estimator == "supervised-probe" and head.model_id == EMBEDDED_MODEL_ID and head.layer == 20
    assert (head.hidden_size, head.num_layers) == (contrastive.hidden_size, contrastive.num_layers)
    assert head.sha256 != contrastive.sha256 and head.data_hash.startswith("sha256:")
    assert load_axis(ROOT / "evals" / "heads" / "qwen2.5-coder-0.5b" / "head-axis.safetensors").sha256 == head.sha256
    with pytest.raises(FileNotFoundError, match="no value head is shipped .* --export-axis"):
        axis_path(EMBEDDED_1P5B.model_id, "head")


def test_build_outputs_default_to_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VALUEAGENT_CACHE", str(tmp_path / "cache"))
    out = default_out("Org/Model-1B")
    assert out == tmp_path / "cache" / "axes" / "org--model-1b.safetensors"
    assert default_report_dir(out) == tmp_path / "cache" / "axes" / "org--model-1b.report"
    assert Path(BuildConfig().work_dir) == tmp_path / "cache" / "axis_build"


def test_nothing_is_written_over_without_overwrite(tmp_path: Path) -> None:
    shipped = PACKAGE / "data" / "axes" / "qwen--qwen2.5-coder-0.5b-instruct.safetensors"
    with pytest.raises(FileExistsError, match="shipped with the package.*--overwrite"):
        check_outputs(shipped, tmp_path / "report", overwrite=False)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.json").write_text("{}\n")
    with pytest.raises(FileExistsError, match="earlier build.*--overwrite"):
        check_outputs(tmp_path / "new.safetensors", tmp_path / "report", overwrite=False)
    check_outputs(shipped, tmp_path / "report", overwrite=True)


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    loads: list[str] = []

    def load(*args: Any, **kwargs: Any) -> Any:
        loads.append("model")
        raise RuntimeError("stop here: the inputs were accepted")

    import valueagent.runtime.loading

    monkeypatch.setattr(valueagent.runtime.loading, "load_model", load)
    monkeypatch.setenv("VALUEAGENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return loads


def test_axis_build_refuses_the_shipped_axis_and_a_committed_report_before_loading(no_model: list[str]) -> None:
    shipped = PACKAGE / "data" / "axes" / "qwen--qwen2.5-coder-0.5b-instruct.safetensors"
    before = shipped.read_bytes()
    res = runner.invoke(app, ["axis", "build", "--out", str(shipped), "--report-dir", "r"])
    assert res.exit_code == 2 and "shipped with the package" in res.output and "--overwrite" in res.output
    res = runner.invoke(app, ["axis", "build", "--report-dir", str(ROOT / "evals" / "axis")])
    assert res.exit_code == 2 and "report.json exists" in res.output
    assert not no_model and shipped.read_bytes() == before
    res = runner.invoke(app, ["axis", "build"])  # the defaults: the user cache, empty here
    assert no_model == ["model"] and res.exit_code != 0
