"""Properties of the hidden criteria and the paragraph generator (value-axis construction data)."""

from __future__ import annotations

import random

import pytest

from valueagent.axis.corpus import generate_corpus, insert_sentence, sentence_bounds, word_count
from valueagent.axis.criteria import Criterion, all_criteria, criterion_ids, get_criterion, satisfied_ids

CORPUS = generate_corpus(150, seed=7)
# ends_with_question implies question; nothing else may be satisfied by another criterion's sentence.
IMPLIED = {"ends_with_question": {"question"}}


def test_registry_has_enough_criteria_of_both_kinds() -> None:
    ids = criterion_ids()
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
    assert len(criterion_ids("syntactic")) >= 15 and len(criterion_ids("semantic")) >= 30
    assert get_criterion("dash").statement == "include a dash"
    with pytest.raises(KeyError, match="known"):
        get_criterion("no_such_criterion")


def test_corpus_is_deterministic_neutral_and_sized() -> None:
    assert generate_corpus(150, seed=7) == CORPUS
    assert generate_corpus(5, seed=8) != CORPUS[:5]
    assert len({p.topic for p in CORPUS}) >= 25
    for p in CORPUS:
        assert 50 <= word_count(p.text) <= 200
        assert satisfied_ids(p.text) == (), (p.id, satisfied_ids(p.text))


@pytest.mark.parametrize("crit", all_criteria(), ids=lambda c: c.id)
def test_satisfy_violate_and_spans(crit: Criterion) -> None:
    rng = random.Random(crit.id)
    for base in rng.sample(CORPUS, 15):
        text = crit.satisfy(base.text, rng)
        assert crit.satisfied(text)
        assert set(satisfied_ids(text)) == {crit.id} | IMPLIED.get(crit.id, set())
        spans = crit.spans(text)
        assert spans == sorted(spans) and all(0 <= a < b <= len(text) for a, b in spans)
        for a, b in spans:  # every span satisfies the criterion on its own ...
            assert crit.satisfied(text[a:b])
        if crit.anchor != "start":  # ... and hold all of the satisfying material
            blanked = list(text)
            for a, b in spans:
                blanked[a:b] = " " * (b - a)
            assert not crit.satisfied("".join(blanked))
        violated = crit.violate(text)
        assert not crit.satisfied(violated) and satisfied_ids(violated) == ()
        if crit.anchor is None:
            assert spans[0][0] > 20 and len(text) - spans[-1][1] > 20
        assert 50 <= word_count(text) <= 200


def test_checker_examples() -> None:
    c = get_criterion
    assert c("dash").satisfied("one thing — another") and not c("dash").satisfied("well-known")
    assert c("hyphenated_word").spans("a well-known fact") == [(2, 12)]
    assert c("ends_with_question").satisfied("Why? Because.") is False
    assert c("starts_with_vowel").spans("Over there") == [(0, 4)]
    assert c("instrument").spans("Two violins and a Piano.") == [(4, 11), (18, 23)]
    assert not c("instrument").satisfied("pianola")
    assert c("repeated_word").satisfied("It was very Very slow")
    assert c("contraction").satisfied("it wasn't") and not c("contraction").satisfied("the 'quoted' word")


def test_insert_sentence_positions() -> None:
    text = "Aa bb. Cc dd. Ee ff."
    assert sentence_bounds(text) == [(0, 6), (7, 13), (14, 20)]
    assert insert_sentence(text, "X.", index=1) == "Aa bb. X. Cc dd. Ee ff."
    assert insert_sentence(text, "X.", position="end") == text + " X."
    assert insert_sentence(text, "X.", position="start") == "X. " + text
