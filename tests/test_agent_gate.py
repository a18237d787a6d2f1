"""Gate policies, prompts/code extraction and calibration, as pure functions."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from valueagent.agent.calibrate import (
    Sample,
    calibrate,
    fit_position_baseline,
    load_gate_configs,
    reading_of_records,
    save_calibration,
    trajectory_score,
)
from valueagent.agent.gate import GateConfig, GateInput, Signals, draw, make_gate, normalize, scorer, signals_of
from valueagent.agent.prompts import completion_for, extract_code
from valueagent.stats import logistic_regression


def _inp(kind: str = "segment", *, z: float = 0.0, lp: float = -0.5, n: int = 8, best: float | None = None,
         u: float = 0.5) -> GateInput:
    return GateInput(kind=kind, signals=Signals(value=z, value_norm=z, logprob=lp, n_tokens=n),  # type: ignore[arg-type]
                     best_before=best, draw=u)


def test_position_normalization() -> None:
    cfg = GateConfig(value_baseline=(0.1, 0.02), value_scale=0.5)
    out = normalize([0.1, 0.2], 3, cfg)
    assert out == pytest.approx([(0.1 - 0.1 - 0.02 * math.log1p(3)) / 0.5, (0.2 - 0.1 - 0.02 * math.log1p(4)) / 0.5])
    sig = signals_of([0.1, 0.2], [-1.0, -3.0], 3, cfg)
    assert sig.value == pytest.approx(0.15) and sig.logprob == pytest.approx(-2.0) and sig.n_tokens == 2


def test_value_gate_segment_and_final_rules() -> None:
    gate = make_gate(GateConfig(backtrack_below=-1.0, drop_below=-0.5, accept_above=1.0, min_tokens=4))
    assert gate(_inp(z=0.0)).verdict == "continue"
    assert gate(_inp(z=-1.5)).verdict == "backtrack"
    assert gate(_inp(z=0.0, best=0.8)).verdict == "backtrack"  # drop of -0.8
    assert gate(_inp(z=0.5, best=0.8)).verdict == "continue"
    assert gate(_inp(z=-5.0, n=2)).verdict == "continue"  # too short to read
    assert gate(_inp("final", z=1.2)).verdict == "accept"
    assert gate(_inp("final", z=0.9)).verdict == "run_tests"
    assert make_gate(GateConfig(tests="never"))(_inp("final", z=-9)).verdict == "accept"
    assert make_gate(GateConfig(tests="always", accept_above=0))(_inp("final", z=9)).verdict == "run_tests"
    assert make_gate(GateConfig(signal="none", backtrack_below=5))(_inp(z=0)).verdict == "continue"


def test_logprob_and_combined_scores() -> None:
    s = Signals(value=0.3, value_norm=0.3, logprob=-0.2, n_tokens=5)
    assert scorer(GateConfig(signal="logprob"))(s) == pytest.approx(-0.2)
    assert scorer(GateConfig(signal="value+logprob", weights=(1.0, 2.0, 3.0)))(s) == pytest.approx(1 + 0.6 - 0.6)
    assert scorer(GateConfig(signal="value"))(Signals(value=None, value_norm=None, logprob=-1, n_tokens=1)) is None


def test_random_gate_follows_its_rates_reproducibly() -> None:
    cfg = GateConfig(signal="random", rates={"backtrack": 0.3, "accept": 0.6}, min_tokens=1)
    gate = make_gate(cfg)
    draws = [draw(7, "t/1", i) for i in range(2000)]
    assert draws == [draw(7, "t/1", i) for i in range(2000)] and draws != [draw(8, "t/1", i) for i in range(2000)]
    backs = np.mean([gate(_inp(u=u)).verdict == "backtrack" for u in draws])
    accepts = np.mean([gate(_inp("final", u=u)).verdict == "accept" for u in draws])
    assert backs == pytest.approx(0.3, abs=0.04) and accepts == pytest.approx(0.6, abs=0.04)
    with pytest.raises(ValueError, match="probability"):
        GateConfig(rates={"backtrack": 1.5})


def test_gate_config_round_trips_through_json() -> None:
    cfg = GateConfig(signal="value+logprob", backtrack_below=-1.0, value_baseline=(0.1, 0.2), weights=(1, 2, 3),
                     rates={"backtrack": 0.1, "accept": 0.2})
    assert GateConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_extract_code_and_completion() -> None:
    reply = "```python\nimport math\n\ndef f(x):\n    return x\n```\nThis adds one."
    assert extract_code(reply, "f") == "import math\n\ndef f(x):\n    return x\n"
    assert extract_code("```python\ndef f(x):\n    return x", "f") == "def f(x):\n    return x\n"
    two = "```python\ndef helper():\n    pass\n```\n```python\ndef f(x):\n    return 1\n```"
    assert "def f" in extract_code(two, "f")
    assert completion_for("def f(x):\n    return 1\n", "f").startswith("\ndef f")
    assert completion_for("    return 1\n", "f") == "    return 1\n"


def _samples(n: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        passed = rng.random() < 0.6
        length = rng.randint(40, 120)
        shift = 0.03 if passed else -0.03
        values = [0.05 + 0.01 * math.log1p(p) + shift + rng.gauss(0, 0.02) for p in range(length)]
        logprobs = [(-0.2 if passed else -0.6) + rng.gauss(0, 0.1) for _ in range(length)]
        out.append(Sample(task_id=f"c/{i}", passed=passed, values=values, logprobs=logprobs))
    return out


def test_position_baseline_and_logistic_recover_the_truth() -> None:
    (a, b), s = fit_position_baseline(_samples(200))
    assert b == pytest.approx(0.01, abs=0.002) and s > 0
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 2))
    y = (rng.random(2000) < 1 / (1 + np.exp(-(0.5 + 2 * x[:, 0] - 1 * x[:, 1])))).astype(float)
    w, b = logistic_regression(x, y, l2=0.0, standardize=True)
    assert [b, *w] == pytest.approx([0.5, 2.0, -1.0], abs=0.25)


def test_calibration_hits_its_risk_and_round_trips(tmp_path: Path) -> None:
    samples = _samples(300)
    doc = calibrate(samples, risk=0.1, backtrack_rate=0.1, segment_tokens=16)
    assert doc["n_fit"] + doc["n_threshold"] == 300 and doc["split"].startswith("sha256")
    configs, loaded = load_gate_configs(save_calibration(doc, tmp_path / "gate.json"))
    assert set(configs) == {"value", "logprob-gate", "value+logprob", "random-gate"}
    for name in ("value", "logprob-gate", "value+logprob"):
        rep = doc["report"][name]
        assert rep["accept"] is not None and rep["accept"]["bound"] <= 0.1
        assert rep["flag_rate_passed"] <= 0.2
        cfg = configs[name]
        assert cfg.calibrated and cfg.accept_above is not None
    # the acceptance guarantee, checked on fresh samples from the same distribution
    fresh = _samples(2000, seed=1)
    cfg = configs["value+logprob"]
    accepted = [s for s in fresh if (t := trajectory_score(s, cfg)) is not None and t >= cfg.accept_above]
    assert accepted and np.mean([not s.passed for s in accepted]) <= 0.12
    assert 0 <= configs["random-gate"].rates["backtrack"] <= 1 and configs["random-gate"].signal == "random"
    assert loaded["task_ids"][0].startswith("c/")


def test_calibration_without_a_safe_threshold_always_tests() -> None:
    samples = [Sample(task_id=f"x/{i}", passed=i % 2 == 0, values=[0.1] * 20, logprobs=[-1.0] * 20) for i in range(30)]
    doc = calibrate(samples, risk=0.1)
    assert doc["policies"]["value"]["accept_above"] is None


def test_calibration_records_one_reading_and_refuses_mixed_ones() -> None:
    """Thresholds are in the units of one axis on one model: drafts of two readings cannot share them."""
    def rec(model_id: str, sha: str | None) -> dict[str, object]:
        return {"task_id": "t/1", "meta": {"model": {"model_id": model_id, "revision": "r", "axis": "a",
                                                     "axis_layer": 5, "axis_sha256": sha}}}

    same = reading_of_records([rec("m", "abc"), rec("m", "abc"), {"task_id": "t/2"}])
    assert same == {"model_id": "m", "revision": "r", "axis": "a", "axis_layer": 5, "axis_sha256": "abc"}
    assert reading_of_records([{"task_id": "t/1"}]) is None
    with pytest.raises(ValueError, match="different models or axes"):
        reading_of_records([rec("m", "abc"), rec("m", "def")])
