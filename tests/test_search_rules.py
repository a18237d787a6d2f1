"""The search rules (one program each, driven live by the agent and replayed by the bank): their choices
for scripted samples and verdicts."""

from __future__ import annotations

from typing import Any

from valueagent import search_rules as rules


def drive(rule: rules.Rule, scores: dict[int, float], passes: dict[int, bool | None],
          aborted: frozenset[int] = frozenset()) -> tuple[rules.Choice, list[Any]]:
    log: list[Any] = []
    answer: Any = None
    while True:
        try:
            req = rule.send(answer)
        except StopIteration as done:
            return done.value, log
        log.append(req)
        if req[0] == "draw":
            answer = [rules.Drawn(score=scores[j], tokens=10, aborted=j in aborted) for j in req[1]]
        else:
            answer = passes[req[1]]


def test_rank_draws_all_at_once_and_tests_in_score_order() -> None:
    choice, log = drive(rules.rank(4, "s"), {1: 0.1, 2: 0.9, 3: 0.5, 4: 0.9}, {1: True, 2: False, 3: True, 4: False})
    assert log == [("draw", (1, 2, 3, 4)), ("test", 2), ("test", 4), ("test", 3)] and choice.index == 3
    choice, log = drive(rules.rank(4, "s", max_tests=0), {1: 0.1, 2: 0.9, 3: 0.5, 4: 0.9}, {})
    assert choice.index == 2 and len(log) == 1  # best of N untested; the earlier sample wins a tie
    choice, _ = drive(rules.rank(2, "s"), {1: 0.3, 2: 0.2}, {1: None, 2: None})
    assert choice.index == 1 and "no visible tests" in choice.reason


def test_seq_accepts_discards_or_tests_one_sample_at_a_time() -> None:
    scores = {1: 0.1, 2: 0.5, 3: 0.95}
    choice, log = drive(rules.seq(3, "s", accept=0.9, discard=0.2), scores, {2: False})
    assert log == [("draw", (1,)), ("draw", (2,)), ("test", 2), ("draw", (3,))] and choice.index == 3
    choice, _ = drive(rules.seq(3, "s", accept=None, discard=None), scores, {1: False, 2: False, 3: False})
    assert choice.index == 3 and "no sample accepted" in choice.reason


def test_stop_skips_abandoned_samples_and_may_submit_nothing() -> None:
    choice, log = drive(rules.stop(3, "s"), {1: 0, 2: 0, 3: 0}, {2: False, 3: True}, aborted=frozenset({1}))
    assert ("test", 1) not in log and choice.index == 3
    choice, _ = drive(rules.stop(2, "s"), {1: 0, 2: 0}, {}, aborted=frozenset({1, 2}))
    assert choice.index is None and "abandoned" in choice.reason
