"""`bank encode` -> `bank heads` -> `bank replay --scores` end to end on real (tiny random Qwen3) residuals: the
commands run, the best linear head exports as an axis the runtime loads, and replay pairs each head with
its controls. The banks are small and their labels random: this checks the plumbing, not a finding."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from valueagent.bank.encode import encode_bank
from valueagent.bank.store import BankManifest, load_bank, write_manifest, write_task
from valueagent.cli.main import app
from valueagent.signals import pack_vector

from .conftest import build_tiny_qwen3

runner = CliRunner()


def _write_bank(root: Path, ids: list[str], n: int, rng: np.random.Generator) -> None:
    manifest = BankManifest(model_id="tiny", revision="r1", weights="w", dtype="float32", quantization="int8",
                            axis=None, axis_layer=None, axis_sha256=None, samples=n, temperature=0.8, top_p=0.95,
                            seed=0, seed_rule="r", max_new_tokens=8, prefill="", stop=(), top_k=5,
                            tasks_source="t")
    write_manifest(root, manifest)

    def sample() -> dict[str, Any]:
        k = int(rng.integers(3, 12))
        return {"token_ids": rng.integers(5, 500, k).tolist(), "values": rng.normal(0, 0.1, k).round(4).tolist(),
                "logprobs": (-rng.random(k)).round(4).tolist(), "entropies": rng.random(k).round(4).tolist(),
                "top_logprobs": (-rng.random((k, 5))).round(3).tolist(), "finish_reason": "eos",
                "hidden_mean": pack_vector(rng.normal(0, 1, 64).tolist()), "visible": [bool(rng.random() < 0.5)],
                "hidden_passed": bool(rng.random() < 0.5)}

    for tid in ids:
        write_task(root, {"task_id": tid, "visible_total": 1, "prompt_tokens": 6,
                          "samples": [sample() for _ in range(n + 1)]})


@pytest.fixture
def banks(tmp_path: Path, tiny_tokenizer: Any) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    fit, test = tmp_path / "fit", tmp_path / "test"
    _write_bank(fit, [f"Mbpp/{i}" for i in (*range(511, 523), *range(601, 631))], 4, rng)
    _write_bank(test, [f"Mbpp/{i}" for i in range(11, 41)], 8, rng)
    loaded = SimpleNamespace(model_id="tiny", revision="r1", model=build_tiny_qwen3(num_layers=3),
                             tokenizer=tiny_tokenizer, weights="w")
    for root in (fit, test):
        encode_bank(load_bank(root), loaded=loaded, prompt_ids=lambda _: [3, 9, 27, 81, 2, 6])
    return {"fit": fit, "test": test, "tmp": tmp_path}


def test_heads_export_an_axis_and_replay_pairs_them_with_controls(banks: dict[str, Path]) -> None:
    from valueagent.runtime.artifact import load_axis

    out, axis = banks["tmp"] / "heads" / "heads.json", banks["tmp"] / "head.safetensors"
    res = runner.invoke(app, ["bank", "heads", str(banks["fit"]), "--test", f"mbpp-test={banks['test']}",
                              "--output", str(out), "--export-axis", str(axis), "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["fit"] == {"train_tasks": 30, "validation_tasks": 12, "samples": 210}
    signals = doc["tests"]["mbpp-test"]["signals"]
    assert {"logprob", "random", "confidence"} <= set(signals) and len(doc["chosen"]) == 12
    for c in doc["chosen"]:
        row = signals[c["name"]]
        assert 0 <= row["within_task_auroc"] <= 1 and "within_ci" in row["vs_reference"]
    assert (out.with_name("heads-mbpp-test.png")).is_file() and out.with_suffix(".md").is_file()
    exported = doc["exported_axis"]
    if exported["layer"] == 3:  # the tiny model's last layer: the final, normed hidden state is not an axis
        assert exported["path"] is None and "final, normed" in exported["skipped"] and not axis.exists()
    else:
        loaded = load_axis(axis)
        assert loaded.estimator == "supervised-probe" and loaded.hidden_size == 64 and loaded.num_layers == 3
        assert loaded.layer == exported["layer"]
    scores = out.with_name("heads-mbpp-test-scores.json")
    oof = out.with_name("heads-fit-oof-scores.json")
    assert json.loads(oof.read_text())["cross_fitted_folds"] == 5
    res = runner.invoke(app, ["bank", "replay", str(banks["test"]), "--calibration-bank", str(banks["fit"]),
                              "--scores", str(scores), "--scores", str(oof), "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    head = doc["chosen"][0]["name"]
    assert rep["split"] == {"calibration": 42, "eval": 30}
    assert {"random-rank", "logprob-rank"} <= set(rep["paired"][f"{head}-rank"])
    assert f"{head}-top1" in rep["policies"] and head in rep["signals"]
    assert head in rep["answers"]["test_runs_to_match_always_test"] and f"{head}-rank|tests<=0" in rep["frontier"]
    assert {"random-seq", "logprob-seq"} <= set(rep["paired"][f"{head}-seq"])  # thresholds from out-of-fold scores
    part = json.loads(scores.read_text())
    part["scores"] = dict(list(part["scores"].items())[:25])  # as if only 25 tasks were encoded yet
    scores.write_text(json.dumps(part))
    res = runner.invoke(app, ["bank", "replay", str(banks["test"]), "--calibration-bank", str(banks["fit"]),
                              "--scores", str(scores), "--scores", str(oof), "--json"])
    assert res.exit_code == 2 and "do not cover every sample" in res.output
    res = runner.invoke(app, ["bank", "replay", str(banks["test"]), "--calibration-bank", str(banks["fit"]),
                              "--scores", str(scores), "--scores", str(oof), "--scored-only", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["split"] == {"calibration": 42, "eval": 25, "scored_only": True, "eval_in_bank": 30}


def test_scores_of_another_bank_and_a_scored_test_task_are_refused(banks: dict[str, Path]) -> None:
    out = banks["tmp"] / "h.json"
    res = runner.invoke(app, ["bank", "heads", str(banks["fit"]), "--test", f"self={banks['fit']}",
                              "--output", str(out)])
    assert res.exit_code == 2 and "tasks the heads are fitted on" in res.output
    res = runner.invoke(app, ["bank", "heads", str(banks["fit"]), "--test", f"t={banks['test']}", "--output", str(out),
                              "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    elsewhere = banks["tmp"] / "elsewhere-scores.json"
    doc = json.loads((banks["tmp"] / "h-t-scores.json").read_text())
    elsewhere.write_text(json.dumps({**doc, "bank_sha256": "0" * 64}))
    res = runner.invoke(app, ["bank", "replay", str(banks["test"]), "--calibration-bank", str(banks["fit"]),
                              "--scores", str(elsewhere)])
    assert res.exit_code == 2 and "scores another bank" in res.output
    res = runner.invoke(app, ["bank", "heads", str(banks["test"]), "--test", f"t={banks['fit']}", "--output", str(out)])
    assert res.exit_code == 2 and "holds MBPP test tasks (e.g. Mbpp/11)" in res.output


def test_a_test_bank_can_be_scored_on_one_split_only(banks: dict[str, Path]) -> None:
    """`--test LABEL=BANK:SPLIT` judges only the bank's tasks of that split (HumanEval transfer on its eval
    split); a split the benchmark does not have is one line, exit 2, before anything is fitted."""
    out = banks["tmp"] / "split.json"
    res = runner.invoke(app, ["bank", "heads", str(banks["fit"]), "--test", f"t={banks['test']}:dev",
                              "--output", str(out)])
    assert res.exit_code == 2 and "--split 'dev' is not a mbpp split" in res.output and not out.exists()
    res = runner.invoke(app, ["bank", "heads", str(banks["fit"]), "--test", f"t={banks['test']}:train",
                              "--output", str(out)])
    assert res.exit_code == 2 and "no task of" in res.output and "'train' split" in res.output
    res = runner.invoke(app, ["bank", "heads", str(banks["fit"]), "--test", f"t={banks['test']}:test",
                              "--output", str(out), "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    from valueagent.benchmarks import benchmark

    in_split = {t.task_id for t in benchmark("mbpp").tasks("test")} & {f"Mbpp/{i}" for i in range(11, 41)}
    assert json.loads(out.read_text())["tests"]["t"]["n_tasks"] == len(in_split) == 29  # one excluded reference


def test_an_exported_head_read_live_gives_the_heads_own_score(banks: dict[str, Path]) -> None:
    """The exported axis is read as ``h . direction + bias`` per token by the runtime's hook; its mean over a
    sample's tokens is the head's score of that sample (up to the features' float16 rounding), so `--axis FILE`
    ranks a task's samples as the head does."""
    import torch

    from valueagent.bank.head_protocol import export_axis
    from valueagent.bank.heads import HeadSpec, fit_head, load_samples
    from valueagent.runtime.artifact import load_axis
    from valueagent.runtime.hooks import AxisHook, attached

    spec = HeadSpec(family="probe", source="mean", layers=(1,), c=1.0, centre=False)
    fit_bank, test_bank = load_bank(banks["fit"]), load_bank(banks["test"])
    head = fit_head(spec, load_samples(fit_bank))
    path = banks["tmp"] / "layer1.safetensors"
    doc = {"chosen": [spec.to_dict()], "tests": {}}
    assert export_axis(doc, {spec.name: head}, fit_bank, path)["layer"] == 1
    axis = load_axis(path)
    assert axis.reading == "linear" and axis.metadata()["schema_version"] == 2
    data = load_samples(test_bank)
    want = head.score(data)
    model = build_tiny_qwen3(num_layers=3)  # the encode fixture's weights (same seed)
    hook = AxisHook(torch.from_numpy(axis.direction), linear=True, bias=axis.bias)
    prompt = [3, 9, 27, 81, 2, 6]
    got, at = [], 0
    with attached(model, axis.layer, hook), torch.no_grad():
        for rec in test_bank:
            for s in rec["samples"]:
                model(torch.tensor([prompt + list(s["token_ids"])]))
                assert hook.last is not None
                got.append(float(hook.last[0, len(prompt):].mean()))
                at += 1
    np.testing.assert_allclose(got, want[:at], atol=0.02 * max(1.0, float(np.abs(want).max())))
    assert float(np.corrcoef(got, want)[0, 1]) > 0.999
