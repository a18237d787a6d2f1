"""Reading results.jsonl and the summary statistics, on synthetic records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.eval_helpers import informative_records, outcomes, record, write_run
from valueagent.eval.reading import calibration, fit_logistic, oof_probabilities, reading_quality
from valueagent.eval.records import RunResults, final_reading, load_results, parse_record, repeated_backtracks
from valueagent.eval.summary import holm, paired_comparison, summarize, summarize_run
from valueagent.stats import mcnemar_exact


def test_load_skips_torn_line_and_keeps_last_duplicate(tmp_path: Path) -> None:
    recs = [record("HumanEval/0", "value", False), record("HumanEval/1", "value", True),
            record("HumanEval/0", "value", True)]
    run = load_results(write_run(tmp_path, recs, torn_tail='{"task_id": "HumanEval/2", "pol'))
    assert run.corrupt_lines == 1 and run.duplicates == 1
    assert [r.task_id for r in run.records("value")] == ["HumanEval/0", "HumanEval/1"]
    assert run.by_policy["value"]["HumanEval/0"].passed is True


def test_load_missing_file_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run directory"):
        load_results(tmp_path)


def test_task_order_is_numeric(tmp_path: Path) -> None:
    run = load_results(write_run(tmp_path, [record(f"HumanEval/{i}", "single", True) for i in (10, 2, 1)]))
    assert run.task_ids() == ["HumanEval/1", "HumanEval/2", "HumanEval/10"]


def test_final_reading_is_the_last_final_reading() -> None:
    trace: list[dict[str, Any]] = [{"kind": "final", "value_norm": 1.0}, {"kind": "segment", "value_norm": 5.0},
             {"kind": "final", "value_norm": None, "value": 2.0}, {"kind": "tests"}]
    assert final_reading(trace) == 2.0  # falls back to the raw value when unnormalized
    assert final_reading([{"kind": "segment", "value_norm": 1.0}]) is None
    rec = parse_record(record("t/1", "value", True, value=0.25, logprob=-0.5))
    assert rec.value == pytest.approx(0.25) and rec.logprob == pytest.approx(-0.5)


def test_policy_stats_and_paired_comparison(tmp_path: Path) -> None:
    n = 40
    a, b = outcomes(n, 30, seed=1), outcomes(n, 15, seed=2)
    recs = [record(f"HumanEval/{i}", "value", ok, test_runs=1) for i, ok in enumerate(a)]
    recs += [record(f"HumanEval/{i}", "always-test", ok, test_runs=3) for i, ok in enumerate(b)]
    summary = summarize(load_results(write_run(tmp_path, recs)), n_boot=2000)
    value = summary["policies"]["value"]
    assert value["n"] == n and value["passed"] == 30
    est = value["pass@1"]
    assert est["lo"] < est["estimate"] == 0.75 < est["hi"]
    (cmp,) = summary["paired"]
    assert cmp["a"] == "value" and cmp["b"] == "always-test" and cmp["n_common"] == n
    assert cmp["a_only"] == sum(x and not y for x, y in zip(a, b, strict=True))
    assert cmp["b_only"] == sum(y and not x for x, y in zip(a, b, strict=True))
    assert cmp["mcnemar_p"] == pytest.approx(mcnemar_exact(a, b).p_value)
    assert cmp["pass_diff"]["estimate"] == pytest.approx(15 / 40)
    assert cmp["pass_diff"]["lo"] > 0  # clearly better
    assert cmp["test_runs_diff"]["estimate"] == pytest.approx(-2.0)
    json.dumps(summary)  # JSON-ready


def test_controls_pair_each_value_policy_with_its_matched_control(tmp_path: Path) -> None:
    """value-branch is not the reference, yet it meets logprob-branch in `controls` (and in report.md);
    value meets always-test there too, single (no reading, no control) does not appear."""
    n = 20
    a, b = outcomes(n, 16, seed=3), outcomes(n, 8, seed=4)
    recs = [record(f"HumanEval/{i}", p, ok) for p, o in (("value-branch", a), ("logprob-branch", b),
                                                         ("value", b), ("always-test", b), ("single", a))
            for i, ok in enumerate(o)]
    run_dir = write_run(tmp_path, recs)
    summary = summarize(load_results(run_dir), n_boot=500)
    pairs = {(c["a"], c["b"]): c for c in summary["controls"]}
    assert list(pairs) == [("value", "always-test"), ("value-branch", "logprob-branch")]
    branch = pairs["value-branch", "logprob-branch"]
    assert branch["pass_diff"]["estimate"] == pytest.approx(8 / n)
    assert branch["mcnemar_p"] == pytest.approx(mcnemar_exact(a, b).p_value)
    assert branch["mcnemar_p_holm"] >= branch["mcnemar_p"]
    assert pairs["value", "always-test"]["mcnemar_p"] == 1.0  # identical outcomes
    from valueagent.eval.report import render_report

    text = render_report(summary, None, {})
    assert "against its control at matched cost" in text and "value-branch vs logprob-branch" in text


def test_paired_uses_only_common_tasks() -> None:
    a = {f"t/{i}": parse_record(record(f"t/{i}", "value", True)) for i in range(5)}
    b = {f"t/{i}": parse_record(record(f"t/{i}", "single", False)) for i in range(3, 8)}
    pc = paired_comparison(a, b, n_boot=200)
    assert pc is not None and pc["n_common"] == 2 and pc["a_only"] == 2
    assert paired_comparison(a, {}, n_boot=10) is None


def test_holm_is_monotone_and_at_least_raw() -> None:
    p = [0.01, 0.04, 0.03, 0.5]
    adj = holm(p)
    assert all(x >= y for x, y in zip(adj, p, strict=True))
    assert adj[0] == pytest.approx(0.04) and adj[3] == pytest.approx(0.5)


def test_informative_reading_has_high_auroc_and_beats_base_rate() -> None:
    recs = [parse_record(r) for r in informative_records("value", outcomes(60, 30, seed=3))]
    q = reading_quality(recs, n_boot=500)
    assert q["status"] == "ok" and q["n"] == 60
    auc = q["value_auroc"]
    assert 0.9 < auc["estimate"] <= 1.0 and auc["lo"] <= auc["estimate"] <= auc["hi"]
    cal = q["calibration"]
    assert cal["brier"]["estimate"] < cal["brier_base_rate"]
    assert sum(b["count"] for b in cal["bins"]) == 60


def test_reading_quality_reports_why_it_is_missing() -> None:
    same = [parse_record(record(f"t/{i}", "value", True, value=float(i))) for i in range(10)]
    assert "same outcome" in reading_quality(same)["status"]
    none = [parse_record(record(f"t/{i}", "single", i % 2 == 0, value=None)) for i in range(10)]
    q = reading_quality(none)
    assert q["n"] == 0 and q["n_without_reading"] == 10 and "too few" in q["status"]


def test_logistic_fit_and_oof_probabilities() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    y = (rng.random(400) < 1 / (1 + np.exp(-(0.5 + 2 * x)))).astype(float)
    a, b = fit_logistic(x, y)
    assert 1.4 < b < 2.8 and -0.1 < a < 1.1
    probs, base = oof_probabilities(x, y.astype(bool), folds=5)
    assert ((probs >= 0) & (probs <= 1)).all() and np.allclose(base, y.mean(), atol=0.05)
    uninformative = calibration(rng.normal(size=200), rng.random(200) < 0.5, n_boot=200)
    assert uninformative["brier"]["estimate"] > uninformative["brier_base_rate"] - 0.02


def test_summarize_run_writes_summary(tmp_path: Path) -> None:
    write_run(tmp_path, informative_records("value", outcomes(12, 6)))
    summary = summarize_run(tmp_path, n_boot=200)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["schema"] == summary["schema"] == "valueagent-eval-summary/2"
    assert on_disk["paired"] == [] and "value" in on_disk["reading"]["by_policy"]


def test_policy_order_matches_the_agent() -> None:
    from valueagent.agent.policies import POLICY_NAMES
    from valueagent.eval.records import POLICY_ORDER, policy_order

    assert POLICY_ORDER == POLICY_NAMES
    assert policy_order(["zeta", "value", "single", "alpha"]) == ["single", "value", "alpha", "zeta"]


def _seg(text: str, kind: str = "segment") -> dict[str, Any]:
    return {"role": "assistant", "content": text, "kind": kind, "attempt": 0}


def test_repeated_backtracks_counts_resamples_that_rewrite_the_dropped_text() -> None:
    prompt = {"role": "user", "content": "write f", "kind": "prompt", "attempt": 0}
    transcript = [
        prompt, _seg("def f("), _seg("x):", "segment"), _seg("x):", "backtrack"),  # dropped "x):"
        _seg("x"), _seg("): return"),  # rewritten across two segments: a repeat
        _seg("): return", "backtrack"), _seg(") -> int:"),  # a different resample: not a repeat
        _seg(" 1", "backtrack"), {"role": "user", "content": "tests failed", "kind": "feedback", "attempt": 0},
        _seg(" 1"),  # after another kind of entry: that backtrack wrote nothing of its own
    ]
    assert repeated_backtracks(transcript) == 1
    assert repeated_backtracks([]) == 0
    assert repeated_backtracks([prompt, _seg("", "backtrack"), _seg("x")]) == 0  # nothing dropped, nothing repeated
    rec = parse_record({"task_id": "T/0", "policy": "value", "passed": False, "backtracks": 3,
                        "transcript": transcript})
    assert (rec.backtracks, rec.repeated_backtracks) == (3, 1)
    summary = summarize(RunResults(by_policy={"value": {"T/0": rec}}), n_boot=10)
    assert summary["policies"]["value"]["backtracks_total"] == 3
    assert summary["policies"]["value"]["backtracks_repeated"] == 1


@pytest.mark.parametrize(("run_name", "quoted"), [
    # evals/humaneval/comparison-80/README.md: "68 of value's 82 backtracks resampled exactly the text they
    # dropped (logprob-gate 3 of 59, random-gate 26 of 50, value+logprob 4 of 59)".
    ("comparison-80", {"value": (68, 82), "logprob-gate": (3, 59), "random-gate": (26, 50),
                       "value+logprob": (4, 59)}),
    # evals/humaneval/comparison-124/README.md and the README: 126 of 155, 7 of 121, 54 of 96, 9 of 131.
    ("comparison-124", {"value": (126, 155), "logprob-gate": (7, 121), "random-gate": (54, 96),
                        "value+logprob": (9, 131)}),
])
def test_committed_comparison_reproduces_the_quoted_repeat_counts(run_name: str, quoted: dict) -> None:
    run = Path(__file__).resolve().parents[1] / "evals" / "humaneval" / run_name
    stats = summarize(load_results(run), n_boot=10)["policies"]
    got = {p: (stats[p]["backtracks_repeated"], stats[p]["backtracks_total"]) for p in quoted}
    assert got == quoted


def test_committed_1_5b_live_comparison_gives_the_readme_figures() -> None:
    """README "Live, on all 124 eval tasks" and evals/humaneval/comparison-124-1.5b-int8/README.md: passes per
    policy, repeated backtracks, and each value policy against its control (wins/losses)."""
    run = Path(__file__).resolve().parents[1] / "evals" / "humaneval" / "comparison-124-1.5b-int8"
    summary = summarize(load_results(run), n_boot=10)
    stats = summary["policies"]
    assert {p: (s["n"], s["passed"]) for p, s in stats.items()} == {
        "single": (124, 82), "always-test": (124, 89), "value": (124, 90), "steer-high": (124, 92),
        "steer-low": (124, 90), "random-gate": (124, 90), "logprob-gate": (124, 89), "logprob-branch": (124, 87),
        "value-branch": (124, 89)}
    assert {p: (stats[p]["backtracks_repeated"], stats[p]["backtracks_total"]) for p in
            ("value", "random-gate", "logprob-gate", "value-branch")} == {
        "value": (26, 76), "random-gate": (12, 31), "logprob-gate": (5, 78), "value-branch": (1, 91)}
    assert {(c["a"], c["b"]): (c["a_only"], c["b_only"]) for c in summary["controls"]} == {
        ("value", "random-gate"): (8, 8), ("value", "logprob-gate"): (8, 7), ("value", "always-test"): (8, 7),
        ("value-branch", "logprob-branch"): (9, 7), ("steer-high", "always-test"): (7, 4),
        ("steer-low", "always-test"): (10, 9)}

