"""compare, regress, baselines, config and --fail-under on constructed runs (one clearly worse, one equal)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.eval_helpers import config, outcomes, record, write_run
from valueagent.cli.main import app
from valueagent.eval.compare import NoOverlapError, compare_runs
from valueagent.eval.config import ConfigMismatchError, check_resume, git_commit, package_versions
from valueagent.eval.humaneval import fail_under
from valueagent.eval.regress import check_regression, flatten_numbers, make_baseline

N = 40
GOOD = outcomes(N, 34, seed=5)
BAD = [ok and i % 3 == 0 for i, ok in enumerate(GOOD)]  # loses most of the good run's passes
VALIDATION = {"held_out": {"auroc": 0.80, "n": 72, "random_auroc_mean": 0.55}, "code_pairs": {"accuracy": 0.70}}
runner = CliRunner()


def _run(path: Path, passed: list[bool], *, validation: dict | None = None, policies=("value", "single")) -> Path:
    recs = [record(f"HumanEval/{i}", p, ok) for p in policies for i, ok in enumerate(passed)]
    return write_run(path, recs, config=config(validation=VALIDATION if validation is None else validation))


def test_compare_clearly_worse_vs_equal(tmp_path: Path) -> None:
    a, b, same = _run(tmp_path / "a", GOOD), _run(tmp_path / "b", BAD), _run(tmp_path / "c", GOOD)
    worse = compare_runs(a, b, n_boot=1000)
    row = next(r for r in worse["policies"] if r["policy"] == "value")
    assert row["n_common"] == N and row["passed_a"] == 34 and row["passed_b"] == sum(BAD)
    assert row["a_only"] == 34 - sum(BAD) and row["b_only"] == 0
    assert row["pass_diff"]["hi"] < 0 and row["mcnemar_p"] < 1e-4  # B - A, clearly negative
    assert row["mcnemar_p_holm"] >= row["mcnemar_p"]
    equal = compare_runs(a, same, n_boot=1000)
    assert all(r["mcnemar_p"] == 1.0 and r["pass_diff"]["estimate"] == 0 for r in equal["policies"])
    assert equal["config_differences"] == {}


def test_compare_needs_overlap(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", GOOD, policies=("value",))
    b = _run(tmp_path / "b", GOOD, policies=("single",))
    with pytest.raises(NoOverlapError, match="no policy with tasks in common"):
        compare_runs(a, b)
    res = runner.invoke(app, ["compare", str(a), str(b)])
    assert res.exit_code == 2 and "no policy" in res.output


def test_cli_compare_prints_table_and_json(tmp_path: Path) -> None:
    a, b = _run(tmp_path / "a", GOOD), _run(tmp_path / "b", BAD)
    res = runner.invoke(app, ["compare", str(a), str(b)])
    assert res.exit_code == 0, res.output
    assert "value (B) vs value (A)" in res.stdout and "B - A" in res.stdout
    res = runner.invoke(app, ["compare", str(a), str(b), "--json"])
    assert json.loads(res.stdout)["schema"] == "valueagent-compare/1"
    out = tmp_path / "cmp" / "good-bad.json"
    res = runner.invoke(app, ["compare", str(a), str(b), "--labels", "good,bad", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["policies"][0]["n_common"] == N
    assert "value (bad) vs value (good)" in out.with_suffix(".md").read_text() == res.stdout
    for bad, fix in ((["--labels", "a"], "two distinct labels"),
                     (["--output", str(tmp_path / "x.md")], "end in .json")):
        res = runner.invoke(app, ["compare", str(a), str(b), *bad])
        assert res.exit_code == 2 and fix in res.output


def _two_policies(path: Path, value: list[bool], control: list[bool], *, extra: int = 0) -> Path:
    recs = [record(f"HumanEval/{i}", "value", ok) for i, ok in enumerate(value)]
    recs += [record(f"HumanEval/{i}", "random-gate", ok) for i, ok in enumerate(control)]
    recs += [record(f"HumanEval/{N + i}", "value", True) for i in range(extra)]  # no control: not paired
    return write_run(path, recs, config=config(validation=VALIDATION))


def test_edges_isolate_the_reading_from_the_model(tmp_path: Path) -> None:
    """A stronger model B that lifts policy and control alike changes no edge; one that lifts only the policy
    on six tasks gives a difference of edges of 6/N with the exact sign-flip p 2/2^6."""
    base = _two_policies(tmp_path / "a", GOOD, GOOD, extra=3)
    failed = [i for i, ok in enumerate(GOOD) if not ok][:6]
    lifted = [ok or i in failed for i, ok in enumerate(GOOD)]
    alike = compare_runs(base, _two_policies(tmp_path / "b", lifted, lifted), n_boot=1000)["edges"]
    assert [(r["policy"], r["control"], r["n_common"]) for r in alike] == [("value", "random-gate", N)]
    assert alike[0]["difference_of_differences"]["delta"] == 0 and alike[0]["difference_of_differences"]["p"] == 1
    assert alike[0]["edge_b"]["delta"] == 0  # the policy's own gain of 6 tasks is in `policies`, not here
    only = compare_runs(base, _two_policies(tmp_path / "c", lifted, GOOD), n_boot=1000)["edges"][0]
    assert only["edge_a"]["delta"] == 0 and only["edge_b"]["wins"] == 6 and only["edge_b"]["losses"] == 0
    did = only["difference_of_differences"]
    assert did["delta"] == pytest.approx(6 / N) and did["p"] == pytest.approx(2 / 2**6) and did["ci"][0] > 0
    res = runner.invoke(app, ["compare", str(base), str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "value vs random-gate" in res.stdout and "+15.0 [" in res.stdout  # 6/40 in points
    unpaired = compare_runs(_run(tmp_path / "d", GOOD), _run(tmp_path / "e", BAD), n_boot=1000)
    assert unpaired["edges"] == []  # value and single: no control pair, so no edge table


def _baseline(tmp_path: Path) -> Path:
    path = tmp_path / "baseline.json"
    res = runner.invoke(app, ["eval", "baseline", "--run", str(_run(tmp_path / "base", GOOD)), "--out", str(path)])
    assert res.exit_code == 0, res.output
    data = json.loads(path.read_text())
    assert data["schema"] == "valueagent-baseline/1" and data["policies"]["value"]["passed"] == 34
    assert len(data["policies"]["value"]["outcomes"]) == N and data["axis"]["validation"] == VALIDATION
    return path


def test_regress_exit_codes(tmp_path: Path) -> None:
    base = _baseline(tmp_path)
    worse = runner.invoke(app, ["eval", "regress", "--baseline", str(base), "--run", str(_run(tmp_path / "b", BAD))])
    assert worse.exit_code == 1 and "REGRESSED" in worse.output
    same = runner.invoke(app, ["eval", "regress", "--baseline", str(base), "--run", str(_run(tmp_path / "c", GOOD))])
    assert same.exit_code == 0 and "no regression" in same.output


def test_regress_axis_validation_drop(tmp_path: Path) -> None:
    base = _baseline(tmp_path)
    dropped = {"held_out": {"auroc": 0.70, "n": 72, "random_auroc_mean": 0.40}, "code_pairs": {"accuracy": 0.70}}
    run = _run(tmp_path / "d", GOOD, validation=dropped)
    res = runner.invoke(app, ["eval", "regress", "--baseline", str(base), "--run", str(run), "--json"])
    assert res.exit_code == 1
    checks = json.loads(res.stdout)["checks"]
    axis = {c["name"]: c["regressed"] for c in checks if c["kind"] == "axis"}
    assert axis == {"held_out.auroc": True, "code_pairs.accuracy": False}  # counts and controls are skipped
    sidecar = tmp_path / "axis.json"
    sidecar.write_text(json.dumps({"validation": VALIDATION}))
    res = runner.invoke(app, ["eval", "regress", "--baseline", str(base), "--run", str(run), "--axis",
                              str(tmp_path / "axis.safetensors")])
    assert res.exit_code == 0, res.output  # --axis overrides the run's recorded validation


def test_small_drop_needs_max_drop(tmp_path: Path) -> None:
    baseline = make_baseline(_run(tmp_path / "base", GOOD))
    slightly = list(GOOD)
    slightly[[i for i, ok in enumerate(GOOD) if ok][0]] = False  # one task fewer: not significant
    run = _run(tmp_path / "r", slightly)
    assert check_regression(baseline, run).ok
    report = check_regression(baseline, run, max_drop=0.01)
    assert not report.ok and "max-drop" in report.checks[0].detail


def test_max_lost_counts_tasks_whatever_the_size(tmp_path: Path) -> None:
    for n in (4, 40):
        base = [True] * n
        baseline = make_baseline(_run(tmp_path / f"base{n}", base))
        for lost, ok in ((1, True), (2, False)):
            run = _run(tmp_path / f"r{n}-{lost}", [i >= lost for i in range(n)])
            report = check_regression(baseline, run, max_lost=1)
            assert report.ok is ok
            assert ok or f"{lost} tasks lost, above --max-lost 1" in report.checks[0].detail
    res = runner.invoke(app, ["eval", "regress", "--baseline", str(_baseline(tmp_path)), "--run",
                              str(_run(tmp_path / "c", GOOD)), "--max-lost", "-1"])
    assert res.exit_code == 2


def test_regress_without_overlap_is_a_usage_error(tmp_path: Path) -> None:
    base = _baseline(tmp_path)
    other = _run(tmp_path / "o", GOOD, policies=("always-test",))
    res = runner.invoke(app, ["eval", "regress", "--baseline", str(base), "--run", str(other)])
    assert res.exit_code == 2 and "shares no" in res.output
    res = runner.invoke(app, ["eval", "regress", "--baseline", str(tmp_path / "nope.json"), "--run", str(other)])
    assert res.exit_code == 2 and "eval baseline" in res.output


def test_flatten_numbers() -> None:
    assert flatten_numbers({"a": {"b": 1, "c": [1, 2], "d": True}, "e": 0.5}) == {"a.b": 1.0, "e": 0.5}


def test_fail_under() -> None:
    summary = {"policies": {"value": {"pass@1": {"estimate": 0.55}}, "single": {"pass@1": {"estimate": 0.7}}}}
    assert fail_under(summary, 0.5) == []
    assert fail_under(summary, 60) == ["value: pass@1 55.0% < 60.0%"]  # > 1 reads as percent
    assert fail_under(summary, 0.6, ["single"]) == []
    assert fail_under({"policies": {"single": {"pass@1": {"estimate": 0.4}}}}, 0.5) == [
        "single: pass@1 40.0% < 50.0%"]  # without `value`, every policy is checked
    assert fail_under(summary, 0.5, ["always-test"]) == ["always-test: no results"]


def test_config_helpers() -> None:
    versions = package_versions()
    assert versions["python"] and versions["numpy"]
    assert set(git_commit()) == {"commit", "dirty"}
    old = config(sha="aaa")
    check_resume(old, config(sha="aaa"))
    with pytest.raises(ConfigMismatchError, match="axis.sha256"):
        check_resume(old, config(sha="bbb"))


def test_committed_live_edges_0_5b_to_1_5b_give_the_readme_figures() -> None:
    """README "Live, on all 124 eval tasks": each value policy's edge over its control on the committed 0.5B
    and 1.5B runs (wins/losses per model) and the exact sign-flip p of their difference."""
    runs = Path(__file__).resolve().parents[1] / "evals" / "humaneval"
    edges = compare_runs(runs / "comparison-124", runs / "comparison-124-1.5b-int8", n_boot=200)["edges"]
    got = {(r["policy"], r["control"]): ((r["edge_a"]["wins"], r["edge_a"]["losses"]),
                                         (r["edge_b"]["wins"], r["edge_b"]["losses"]),
                                         round(r["difference_of_differences"]["p"], 2)) for r in edges}
    assert got == {("value", "random-gate"): ((3, 12), (8, 8), 0.16),
                   ("value", "logprob-gate"): ((4, 14), (8, 7), 0.10),
                   ("value", "always-test"): ((7, 15), (8, 7), 0.21),
                   ("steer-high", "always-test"): ((4, 6), (7, 4), 0.33),
                   ("steer-low", "always-test"): ((3, 4), (10, 9), 0.84)}
