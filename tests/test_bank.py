"""The sample bank: per-token readings from the decode pass, resumable atomic storage, and replay that
agrees with a live run of the same policy on the same seeds (tiny random Qwen3, real sandbox)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from tests.test_backend import make_axis
from valueagent.agent.prompts import PromptConfig
from valueagent.bank.build import BankSpec, build_bank, manifest_for
from valueagent.bank.replay import ReplayConfig, replay
from valueagent.bank.store import BankError, load_bank, task_file
from valueagent.runtime.backend import HFBackend
from valueagent.runtime.generation import GenerationRequest
from valueagent.tasks import humaneval_split

N = 3
TOKENS = 24  # longer than the early-stop window (16), so the stop rules can fire


@pytest.fixture
def backend(tiny_model: Any, tiny_tokenizer: Any) -> Any:
    b = HFBackend(tiny_model, tiny_tokenizer, model_id="tiny", axis=make_axis(tiny_model), max_batch=16)
    yield b
    b.close()


@pytest.fixture(scope="module")
def sandbox() -> Any:
    from valueagent.sandbox import Sandbox

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sb = Sandbox(workers=2)
    yield sb
    sb.close()


def _tasks() -> tuple[Any, ...]:
    return humaneval_split("eval")[:3]


def _build(backend: Any, sandbox: Any, root: Path, resume: bool = False, tasks: Any = None) -> tuple[int, int]:
    spec = BankSpec(samples=N, max_new_tokens=TOKENS, concurrency=2)
    manifest = manifest_for(backend, spec, PromptConfig(), "humaneval", "float32 (random init)")
    return asyncio.run(build_bank(tasks or _tasks(), backend=backend, sandbox=sandbox, root=root, spec=spec,
                                  manifest=manifest, resume=resume))


def test_generation_records_entropy_topk_and_mean_residual(backend: Any) -> None:
    msgs = ({"role": "user", "content": "write add"},)
    gen = backend.generate_sync(GenerationRequest(messages=msgs, max_new_tokens=8, temperature=0.8, seed=3,
                                                  hidden_mean=True, ignore_eos=True))
    n = gen.n_tokens
    assert len(gen.entropies) == len(gen.top_logprobs) == len(gen.values) == n == 8
    assert all(e >= 0 for e in gen.entropies)
    # the sampled token's log-prob never beats the best one; top-k come sorted
    assert all(t[0] >= lp - 1e-5 and t == sorted(t, reverse=True) for t, lp in zip(gen.top_logprobs, gen.logprobs,
                                                                                   strict=True))
    assert gen.hidden_mean is not None and len(gen.hidden_mean) == backend.info().hidden_size


def test_shared_prefill_gives_what_separate_requests_give(backend: Any) -> None:
    msgs = ({"role": "user", "content": "sort a list"},)
    reqs = [GenerationRequest(messages=msgs, max_new_tokens=10, temperature=0.8, top_p=0.95, seed=s, ignore_eos=True)
            for s in (1, 2, 3)]

    async def together() -> list[Any]:
        return list(await asyncio.gather(*(backend.generate(r) for r in reqs)))

    batched = asyncio.run(together())
    alone = [backend.generate_sync(r) for r in reqs]
    for a, b in zip(batched, alone, strict=True):
        assert a.token_ids == b.token_ids
        assert a.values == pytest.approx(b.values, abs=1e-4)


def test_exclude_first_never_takes_the_excluded_token(backend: Any) -> None:
    msgs = ({"role": "user", "content": "x"},)
    greedy = backend.generate_sync(GenerationRequest(messages=msgs, max_new_tokens=2, ignore_eos=True))
    first = greedy.token_ids[0]
    other = backend.generate_sync(GenerationRequest(messages=msgs, max_new_tokens=2, ignore_eos=True,
                                                    exclude_first=(first,)))
    assert other.token_ids[0] != first


@pytest.mark.slow
def test_bank_resumes_refuses_other_settings_and_replay_never_writes(backend: Any, sandbox: Any,
                                                                      tmp_path: Path) -> None:
    root = tmp_path / "bank"
    tasks = _tasks()
    assert _build(backend, sandbox, root, tasks=tasks[:2]) == (2, 0)
    # an interrupted write leaves only a temporary file: resume ignores it and does the missing task
    (root / "tasks" / "HumanEval_x.json.gz.tmp").write_bytes(b"partial")
    with pytest.raises(BankError, match="--resume"):
        _build(backend, sandbox, root, tasks=tasks)
    assert _build(backend, sandbox, root, resume=True, tasks=tasks) == (1, 2)
    bank = load_bank(root)
    assert [t["task_id"] for t in bank] == [t.task_id for t in tasks]
    s = bank.tasks[0]["samples"]
    assert len(s) == N + 1 and s[0]["kind"] == "greedy" and s[0]["temperature"] == 0.0
    assert all(len(x["values"]) == len(x["token_ids"]) == len(x["entropies"]) for x in s)
    # another sampling setting is refused, with the fix
    spec = BankSpec(samples=N + 1, max_new_tokens=TOKENS)
    other = manifest_for(backend, spec, PromptConfig(), "humaneval", "float32 (random init)")
    with pytest.raises(BankError, match="samples differ"):
        asyncio.run(build_bank(tasks, backend=backend, sandbox=sandbox, root=root, spec=spec, manifest=other,
                               resume=True))
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    out = replay(bank, ReplayConfig(calibration=(tasks[0].task_id,)))
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    assert before == after
    assert out["split"] == {"calibration": 1, "eval": 2}
    # a torn task file is named, with the fix
    path = task_file(root, tasks[1].task_id)
    path.write_bytes(gzip.compress(b'{"task_id": "x"')[:-3])
    with pytest.raises(BankError, match=r"HumanEval_\d+\.json\.gz is torn or corrupt.*--resume"):
        load_bank(root)


@pytest.mark.slow
def test_a_task_written_meanwhile_by_another_builder_is_skipped(backend: Any, sandbox: Any, tmp_path: Path) -> None:
    """Two builders on one bank (``bank build --resume`` and ``--resume --reverse``) meet in the middle: a task
    whose file appears while a build runs is not sampled again, and its file is left as the other wrote it."""
    tasks = _tasks()
    other = tmp_path / "other"
    assert _build(backend, sandbox, other, tasks=tasks[-1:]) == (1, 0)
    theirs = task_file(other, tasks[-1].task_id).read_bytes()
    root = tmp_path / "bank"
    spec = BankSpec(samples=N, max_new_tokens=TOKENS, concurrency=1)
    manifest = manifest_for(backend, spec, PromptConfig(), "humaneval", "float32 (random init)")

    def the_other_builder_finishes(progress: dict[str, Any], written: int, todo: int) -> None:
        if written == 1:
            task_file(root, tasks[-1].task_id).write_bytes(theirs)

    assert asyncio.run(build_bank(tasks, backend=backend, sandbox=sandbox, root=root, spec=spec, manifest=manifest,
                                  resume=False, on_task=the_other_builder_finishes)) == (2, 1)
    assert task_file(root, tasks[-1].task_id).read_bytes() == theirs
    assert [t["task_id"] for t in load_bank(root)] == [t.task_id for t in tasks]
    assert json.loads((root / "progress.json").read_text())["done"] == 2


def test_abort_below_ends_the_decode_where_the_window_falls(backend: Any) -> None:
    from valueagent.signals import WINDOW, running_window

    msgs = ({"role": "user", "content": "abc"},)
    full = backend.generate_sync(GenerationRequest(messages=msgs, max_new_tokens=40, temperature=0.8, seed=5,
                                                   ignore_eos=True))
    rw = running_window(__import__("numpy").asarray(full.values))
    threshold = float(sorted(rw)[len(rw) // 2])  # the median window: it is reached somewhere inside
    first = int((rw <= threshold).nonzero()[0][0]) + WINDOW
    cut = backend.generate_sync(GenerationRequest(messages=msgs, max_new_tokens=40, temperature=0.8, seed=5,
                                                  ignore_eos=True, abort_below=("value", threshold)))
    assert cut.finish_reason == "abort" and cut.n_tokens == first
    assert cut.token_ids == full.token_ids[:first]


def test_n_below_one_is_refused() -> None:
    with pytest.raises(BankError, match="--samples must be >= 1"):
        BankSpec(samples=0)


@pytest.mark.slow
def test_replay_agrees_with_live_search_policies(backend: Any, sandbox: Any, tmp_path: Path) -> None:
    """Build a bank, replay it, then run the same policies live on the same seeds: same choices and costs."""
    from valueagent.agent.calibrate import load_gate_configs
    from valueagent.runner import RunConfig, run_tasks

    root = tmp_path / "bank"
    tasks = _tasks()
    _build(backend, sandbox, root)
    # risk 0.5: with 3 calibration samples a 5% rule never fires; this one does, so stops and skips happen live
    result = replay(load_bank(root), ReplayConfig(calibration=(tasks[0].task_id,), risk=0.5))
    fired = [result["policies"][p]["tokens"] < result["policies"]["order-test"]["tokens"]
             for p in ("value-stop", "confidence-stop")]
    assert any(fired), result["calibration"]
    doc = tmp_path / "gate.json"
    doc.write_text(json.dumps(result["gate_config"]))
    configs, _ = load_gate_configs(doc)
    policies = ("value-rank", "logprob-rank", "confidence-rank", "random-rank", "order-rank", "value-seq",
                "logprob-seq", "value-stop", "confidence-stop")
    out = tmp_path / "live"
    config = RunConfig(policies=policies, output_dir=out, concurrency=2, gate_configs=configs,
                       answer_tokens=TOKENS)
    asyncio.run(run_tasks(tasks[1:], backend=backend, sandbox=sandbox, config=config))
    live = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(live) == 2 * len(policies)
    for rec in live:
        replayed = {tid: (p, tok, tests) for tid, p, tok, tests in result["per_task"][rec["policy"]]}
        assert (rec["passed"], rec["tokens"], rec["test_runs"]) == replayed[rec["task_id"]], rec["policy"]


@pytest.mark.parametrize(("args", "message"), [
    (["bank", "build", "humaneval", "-o", "{tmp}/b", "-n", "0"], "--samples must be >= 1"),
    (["bank", "build", "humaneval", "-o", "{tmp}/file.txt"], "is a file: choose a directory"),
    (["bank", "replay", "{tmp}"], "is not a sample bank (no bank.json)"),
    (["bank", "replay", "{tmp}/bank", "--policies", "nope-rank"], "unknown replay policy ['nope-rank']"),
    (["bank", "replay", "{tmp}/bank", "--risk", "2"], "--risk 2.0 must lie in (0, 1)"),
    (["bank", "replay", "{tmp}/bank", "--output", "{tmp}/bank/r.json"], "a replay never writes to a bank"),
])
def test_bank_cli_bad_input_is_one_line_before_any_model_loads(tmp_path: Path, args: list[str], message: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from valueagent.bank.store import BankManifest, write_manifest, write_task
    from valueagent.cli import common
    from valueagent.cli.main import app

    monkeypatch.setattr(common, "load_backend_or_fail", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "file.txt").write_text("keep me")
    manifest = BankManifest(model_id="m", revision=None, weights="w", dtype="float32", quantization=None, axis=None,
                            axis_layer=None, axis_sha256=None, samples=1, temperature=0.8, top_p=0.95, seed=0,
                            seed_rule="r", max_new_tokens=8, prefill="", stop=(), top_k=5, tasks_source="t")
    write_manifest(tmp_path / "bank", manifest)
    sample = {"token_ids": [1], "values": [0.1], "logprobs": [-0.1], "entropies": [0.1],
              "top_logprobs": [[-0.1]], "hidden_mean": None, "visible": [True], "hidden_passed": True}
    write_task(tmp_path / "bank", {"task_id": "HumanEval/0", "visible_total": 1, "samples": [sample, sample]})
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    res = CliRunner().invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and message in lines[0], res.output
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_fitted_signal_thresholds_come_from_out_of_fold_scores() -> None:
    """A probe on pure-noise residuals fits its own calibration samples perfectly; thresholds set on those
    in-sample scores would accept nearly everything untested. Cross-fitted scores must not."""
    import numpy as np

    from valueagent.bank.store import Bank, BankManifest
    from valueagent.signals import pack_vector

    rng = np.random.default_rng(0)
    manifest = BankManifest(model_id="m", revision=None, weights="w", dtype="float32", quantization=None, axis=None,
                            axis_layer=None, axis_sha256=None, samples=8, temperature=0.8, top_p=0.95, seed=0,
                            seed_rule="r", max_new_tokens=8, prefill="", stop=(), top_k=5, tasks_source="t")
    tasks = tuple({"task_id": f"T/{i}", "visible_total": 1,
                   "samples": [_noise_sample(rng, pack_vector(rng.normal(0, 1, 64).tolist())) for _ in range(9)]}
                  for i in range(40))
    out = replay(Bank(Path("."), manifest, tasks), ReplayConfig(calibration=tuple(f"T/{i}" for i in range(20))))
    assert out["calibration"]["probe-seq"]["accept_rate"] < 0.2, out["calibration"]["probe-seq"]


@pytest.mark.slow
def test_the_committed_bank_replays_to_the_readme_figures() -> None:
    """README "Value-guided search": the committed 0.5B bank, replayed, gives the quoted figures."""
    root = Path(__file__).resolve().parents[1] / "evals" / "bank" / "qwen2.5-coder-0.5b-int8"
    out = replay(load_bank(root))
    assert out["split"] == {"calibration": 40, "eval": 124}
    passed = {name: p["passed"] for name, p in out["policies"].items()}
    assert passed["single"] == 70 and passed["always-test"] == 82  # 56.5%, 66.1%
    assert passed["value-top1"] == passed["random-top1"] == 62 and passed["logprob-top1"] == 74
    assert passed["value-rank"] == passed["random-rank"] == 92 and passed["logprob-rank"] == 96
    assert passed["value-seq"] == 74 and passed["value-stop"] == 81 and passed["order-test"] == 93
    assert out["paired"]["value-stop"]["random-stop"]["p"] < 0.01


def test_the_committed_1_5b_bank_replays_to_the_readme_figures() -> None:
    """README "Does a better axis make a better agent?": the committed 1.5B bank, replayed, gives the quoted
    counts, and its comparison with the 0.5B's gives the quoted differences of differences."""
    from valueagent.bank.compare import axis_effect, check_comparable

    here = Path(__file__).resolve().parents[1] / "evals" / "bank"
    out = replay(load_bank(here / "qwen2.5-coder-1.5b-int8"))
    assert out["split"] == {"calibration": 40, "eval": 124}
    passed = {name: p["passed"] for name, p in out["policies"].items()}
    assert passed["single"] == 82 and passed["always-test"] == 87  # 66.1%, 70.2%
    assert passed["value-top1"] == passed["logprob-top1"] == 85 and passed["random-top1"] == 77
    assert passed["value-rank"] == 100 and passed["random-rank"] == passed["logprob-rank"] == 101
    assert passed["value-seq"] == 92 and passed["random-seq"] == 93 and passed["logprob-seq"] == 89
    assert passed["value-stop"] == 95 and passed["random-stop"] == 98 and passed["order-test"] == 99
    base = json.loads((here / "replay-0.5b" / "replay.json").read_text())
    rows = {(r["policy"], r["control"]): r["difference_of_differences"]
            for r in axis_effect(base, out, check_comparable([base, out], ["0.5b", "1.5b"]))}
    assert round(124 * rows[("value-seq", "logprob-seq")]["delta"]) == 15  # +12.1 points
    assert rows[("value-seq", "logprob-seq")]["p"] < 0.05 < rows[("value-seq", "logprob-seq")]["p_holm"]
    assert round(124 * rows[("value-top1", "random-top1")]["delta"]) == 8  # +6.5 points


def test_a_bank_of_ones_own_tasks_replays_what_needs_no_fitting() -> None:
    """Issue 24 item 9: no calibration tasks -> every rank / top-1 of a fixed signal, always-test, order and
    oracle are replayed; the fitted signals and thresholds are skipped, named, with how to get them."""
    import numpy as np

    from valueagent.bank.store import Bank, BankManifest

    rng = np.random.default_rng(1)
    manifest = BankManifest(model_id="m", revision=None, weights="w", dtype="float32", quantization=None, axis=None,
                            axis_layer=None, axis_sha256=None, samples=4, temperature=0.8, top_p=0.95, seed=0,
                            seed_rule="r", max_new_tokens=8, prefill="", stop=(), top_k=5, tasks_source="mine.jsonl")
    tasks = tuple({"task_id": f"mine/{i}", "visible_total": 1, "samples": [_noise_sample(rng) for _ in range(5)]}
                  for i in range(12))
    out = replay(Bank(Path("."), manifest, tasks))
    assert out["split"] == {"calibration": 0, "eval": 12}
    assert {"single", "always-test", "oracle", "value-rank", "logprob-top1", "random-rank", "order-test"} <= set(
        out["policies"])
    assert not {"value-seq", "probe-rank", "value-stop", "random-stop"} & set(out["policies"])
    skipped = out["calibration"]["skipped"]
    assert "value-seq" in skipped["policies"] and "--calibration-bank" in skipped["reason"]


def _noise_sample(rng: Any, hidden_mean: str | None = None, n: int = 20) -> dict[str, Any]:
    """A bank sample of random readings and verdicts (no signal in it)."""
    return {"token_ids": [1] * n, "values": rng.normal(0, 0.1, n).round(4).tolist(),
            "logprobs": (-rng.random(n)).round(4).tolist(), "entropies": rng.random(n).round(4).tolist(),
            "top_logprobs": (-rng.random((n, 5))).round(3).tolist(), "finish_reason": "eos",
            "hidden_mean": hidden_mean, "visible": [bool(rng.random() < 0.5)],
            "hidden_passed": bool(rng.random() < 0.5)}
