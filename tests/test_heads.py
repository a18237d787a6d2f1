"""Value heads: a signal planted in one layer is found on validation, beats log-prob on unseen tasks, and the
protocol refuses to score tasks it fitted on; real encoded banks of the tiny model go through the CLI."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from valueagent.bank.head_protocol import choose_heads, judge, mean_within
from valueagent.bank.heads import HeadSpec, SampleSet, fit_head, within_task_auroc


def _planted(n_tasks: int, seed: int, *, layer: int = 3, n: int = 6, layers: int = 6, hidden: int = 16) -> SampleSet:
    """Tasks of ``n`` samples; pass/fail shows in ``layer`` along one direction, plus a per-task offset (task
    difficulty) that a pooled readout would pick up; log-prob is noise."""
    rng = np.random.default_rng(seed)
    direction = np.linspace(-1, 1, hidden)
    ids, idx, ys, means = [], [], [], []
    for t in range(n_tasks):
        offset = rng.normal(0, 3, hidden)
        y = rng.random(n) < rng.uniform(0.2, 0.8)
        for i in range(n):
            x = rng.normal(0, 1, (layers, hidden)) + offset
            x[layer] += (1.5 if y[i] else -1.5) * direction / np.linalg.norm(direction)
            ids.append(f"Mbpp/{t}")
            idx.append(i)
            ys.append(bool(y[i]))
            means.append(x)
    mean = np.asarray(means, dtype=np.float16)
    k = len(ys)
    fixed = {name: rng.normal(0, 1, k) for name in ("logprob", "confidence", "value", "entropy")}
    return SampleSet(np.asarray(ids), np.asarray(idx), np.asarray(ys), mean, mean.copy(), fixed)


def test_a_planted_layer_is_chosen_on_validation_and_wins_on_unseen_tasks() -> None:
    train, val, test = _planted(60, 0), _planted(30, 1), _planted(60, 2)
    chosen, sweep = choose_heads(train, val)
    best_mean = chosen[0]
    assert best_mean.family == "probe" and best_mean.source == "mean" and best_mean.layers == (3,)
    assert len(sweep["probe-mean"]) == 5 * 3 * 2  # layers 1..5, three C, centred or not
    head = fit_head(best_mean, train)
    scores = {"logprob": test.fixed["logprob"], best_mean.name: head.score(test)}
    out = judge(scores, test, n_boot=500)
    row = out["signals"][best_mean.name]
    assert row["within_task_auroc"] > 0.85 and out["signals"]["logprob"]["within_task_auroc"] < 0.7
    assert row["vs_reference"]["within_ci"][0] > 0 and row["vs_reference"]["best_of_n_delta"] > 0
    assert row["best_of_n"] <= out["oracle_best_of_n"]


def test_within_task_auroc_ignores_task_difficulty() -> None:
    data = _planted(40, 3)
    difficulty = np.asarray([hash(t) % 7 for t in data.task_ids], dtype=float)  # constant inside a task
    assert within_task_auroc(difficulty, data) and abs(mean_within(difficulty, data) - 0.5) < 1e-9


def test_a_centred_linear_head_ranks_like_its_direction() -> None:
    train, test = _planted(50, 4), _planted(20, 5)
    head = fit_head(HeadSpec(family="probe", source="mean", layers=(3,), c=0.1, centre=True), train)
    by_direction = test.mean[:, 3, :].astype(np.float64) @ head.direction()
    for tid in np.unique(test.task_ids):
        m = test.task_ids == tid
        assert np.array_equal(np.argsort(head.score(test)[m]), np.argsort(by_direction[m]))


def test_heads_refuse_test_tasks_they_were_fitted_on(tmp_path: Path) -> None:
    from valueagent.bank.head_protocol import check_banks
    from valueagent.bank.store import Bank

    def bank(model: str, *ids: str) -> Bank:
        return Bank(tmp_path, SimpleNamespace(model_id=model, revision="r"),  # type: ignore[arg-type]
                    tuple({"task_id": t} for t in ids))

    with pytest.raises(ValueError, match="1 tasks the heads are fitted on \\(e.g. Mbpp/601\\)"):
        check_banks(bank("m", "Mbpp/601"), {"mbpp-test": bank("m", "Mbpp/601", "Mbpp/11")})
    with pytest.raises(ValueError, match="a head reads one model's residuals"):
        check_banks(bank("m", "Mbpp/601"), {"mbpp-test": bank("x", "Mbpp/11")})
    check_banks(bank("m", "Mbpp/601"), {"mbpp-test": bank("m", "Mbpp/11")})
