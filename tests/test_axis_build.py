"""The whole build on a tiny random model and a few frozen records: it runs, resumes, and evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from valueagent.axis.build import BuildConfig, build_axis, evaluate_axis
from valueagent.runtime.artifact import load_axis
from valueagent.runtime.loading import LoadedModel

ROOT = Path(__file__).resolve().parents[1]


def _cfg(tmp: Path) -> BuildConfig:
    return BuildConfig(
        episodes=4, contrast_groups=4, samples=1, heldout_tasks=73, code_dev_pairs_per_kind=1,
        code_test_pairs_per_kind=1,
        code_train_pairs_per_kind=1, confidence_pairs=3, backtracking_groups=3, max_new_tokens=8,
        n_random=3, batch_size=2, max_tokens=20000, episodes_dir=str(ROOT / "tasks/episodes"),
        distinctions_dir=str(ROOT / "tasks/distinctions"), tasks_path=str(ROOT / "tasks/synthetic_code/tasks.jsonl"),
        work_dir=str(tmp / "work"), report_dir=str(tmp / "report"), out=str(tmp / "axis.safetensors"),
    )


@pytest.mark.skipif(not (ROOT / "tasks/episodes/episodes.jsonl").exists(), reason="frozen data not generated")
def test_build_then_eval_on_a_tiny_model(tmp_path, tiny_tokenizer, monkeypatch, capsys):
    from tests.conftest import build_tiny_qwen3

    # Rollouts need a sandbox; a tiny random model never passes, so score without running anything.
    class NoSandbox:
        def __init__(self, *a, **k): ...
        def __enter__(self): return self
        def __exit__(self, *a): return None

        def score_humaneval(self, *a, **k):
            return type("R", (), {"status": "failed"})()

    monkeypatch.setattr("valueagent.sandbox.Sandbox", NoSandbox)
    loaded = LoadedModel(model=build_tiny_qwen3(), tokenizer=tiny_tokenizer, model_id="tiny/test", revision=None,
                         device="cpu", dtype="float32", spec="tiny")
    cfg = _cfg(tmp_path)
    result = build_axis(loaded, cfg)
    err = capsys.readouterr().err
    for i, stage in enumerate(("data", "rollouts", "activations", "estimators and validation", "write"), 1):
        assert f"[axis build] stage {i}/5 {stage}" in err  # the stages, in order, and each counter's time left
    assert err.index("stage 3/5") < err.index(" texts run (0 cached)") and "left" in err
    axis = load_axis(cfg.out)
    assert axis.model_id == "tiny/test" and 1 <= axis.layer < 2 and axis.residual_norm_mean > 0
    assert axis.estimator in {"diff_of_means", "matched_contrast", "code_contrast"}  # no probe: one class only
    report = json.loads((tmp_path / "report/report.json").read_text())
    assert set(report["per_layer"]) >= {"diff_of_means", "matched_contrast"}
    assert (tmp_path / "report/layers.png").stat().st_size > 1000
    assert result["summary"]["layer"] == axis.layer
    cached = len(list((tmp_path / "work").rglob("*.npz")))
    with pytest.raises(FileExistsError, match="--overwrite"):  # a finished build is not written over
        build_axis(loaded, cfg)
    from dataclasses import replace

    build_axis(loaded, replace(cfg, overwrite=True))  # resumes: nothing new is computed
    assert len(list((tmp_path / "work").rglob("*.npz"))) == cached
    np.testing.assert_array_equal(load_axis(cfg.out).direction, axis.direction)
    capsys.readouterr()
    ev = evaluate_axis(loaded, axis, cfg, n_random=3)
    err = capsys.readouterr().err
    assert all(f"[axis eval] stage {i}/3 {s}" in err for i, s in enumerate(("data", "activations", "readings"), 1))
    dist = ev["distinctions"]
    assert set(dist) == {"confidence", "backtracking", "code_correctness", "heldout_episodes"}
    for d in dist.values():
        assert any("random" in k for k in d) and any(k.startswith("n_") for k in d)


@pytest.mark.skipif(not (ROOT / "tasks/episodes/episodes.jsonl").exists(), reason="frozen data not generated")
def test_build_without_rollouts_skips_the_probe(tmp_path, tiny_tokenizer):
    """`--samples 0`: no attempts are generated (the slowest part on a CPU), so no probe is fitted; the
    direction estimators are built and chosen as usual."""
    from dataclasses import replace

    from tests.conftest import build_tiny_qwen3

    loaded = LoadedModel(model=build_tiny_qwen3(), tokenizer=tiny_tokenizer, model_id="tiny/test", revision=None,
                         device="cpu", dtype="float32", spec="tiny")
    cfg = replace(_cfg(tmp_path), samples=0)
    build_axis(loaded, cfg)
    report = json.loads((tmp_path / "report/report.json").read_text())
    assert report["rollouts"] == {"n": 0, "passed": 0} and report["probe"] is None
    assert "probe" not in report["per_layer"] and load_axis(cfg.out).estimator != "probe"
    assert all(p.stat().st_size == 0 for p in (tmp_path / "work").rglob("rollouts.jsonl"))


def test_cli_data_sizes_map_onto_the_build_config():
    from valueagent.cli.axis_cmd import _data_sizes

    assert _data_sizes(20, 12, None, None) == {"episodes": 20, "contrast_groups": 12}
    cfg = BuildConfig(**_data_sizes(20, 12, 6, 15))
    assert (cfg.code_dev_pairs_per_kind, cfg.code_test_pairs_per_kind, cfg.code_train_pairs_per_kind) == (6, 6, 6)
    assert (cfg.confidence_pairs, cfg.backtracking_groups, cfg.samples) == (15, 15, BuildConfig.samples)
