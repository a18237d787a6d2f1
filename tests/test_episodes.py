"""Properties of the hidden-criterion games and the matched-token contrasts, and that the generator
reproduces the frozen files under tasks/episodes/."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from valueagent.axis.contrasts import Contrast, generate_contrasts
from valueagent.axis.corpus import Paragraph, generate_corpus, word_count
from valueagent.axis.criteria import get_criterion
from valueagent.axis.episodes import (
    CORPUS_SIZE,
    MAX_ATTEMPTS,
    MIN_CONTEXT_CHARS,
    Episode,
    generate_episodes,
    heldout_criteria,
    split_turn,
)
from valueagent.axis.frozen import dumps_jsonl, sha256_text

FROZEN = Path(__file__).resolve().parents[1] / "tasks" / "episodes"


@pytest.fixture(scope="module")
def corpus() -> list[Paragraph]:
    return generate_corpus(CORPUS_SIZE, seed=0)


@pytest.fixture(scope="module")
def episodes(corpus: list[Paragraph]) -> list[Episode]:
    return generate_episodes(0, corpus=corpus)


@pytest.fixture(scope="module")
def contrasts(corpus: list[Paragraph]) -> list[Contrast]:
    return generate_contrasts(0, corpus=corpus)


def _feedback(user_text: str) -> int:
    head = user_text.split("\n", 1)[0]
    assert head in ("+1", "-1"), user_text[:40]
    return 1 if head == "+1" else -1


def test_shape_and_rewards_come_from_the_checker(episodes: list[Episode]) -> None:
    assert len(episodes) >= 300
    for ep in episodes:
        crit = get_criterion(ep.criterion)
        assert 3 <= ep.n_paragraphs <= 8 and 2 <= ep.discovery_paragraph <= min(6, ep.n_paragraphs - 1)
        msgs = ep.messages
        assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"
        assert [m["role"] for m in msgs[1:]] == ["user", "assistant"] * ((len(msgs) - 1) // 2) + ["user"]
        assert len(ep.attempts) == (len(msgs) - 2) // 2
        per_paragraph = Counter(a.paragraph for a in ep.attempts)
        assert sorted(per_paragraph) == list(range(1, ep.n_paragraphs + 1))
        assert max(per_paragraph.values()) <= MAX_ATTEMPTS
        for att in ep.attempts:
            content = msgs[att.message_index]["content"]
            thinking, paragraph, start = split_turn(content)
            assert start == att.paragraph_start and 2 <= thinking.count(". ") + 1 <= 4
            assert 50 <= word_count(paragraph) <= 200
            reward = 1 if crit.satisfied(paragraph) else -1
            assert att.reward == reward == _feedback(msgs[att.message_index + 1]["content"])
            assert list(att.spans) == [(start + a, start + b) for a, b in crit.spans(paragraph)]
            assert get_criterion(att.hypothesis).satisfied(paragraph)
            if att.phase == "post":
                assert att.attempt == 1 and att.reward == 1 and att.hypothesis == ep.criterion
                assert crit.statement in thinking
            if att.phase == "pre" and att.reward == -1:
                assert not crit.satisfied(paragraph) and att.hypothesis != ep.criterion
            if att.reward == 1 or att.attempt == MAX_ATTEMPTS:  # moved on to the next paragraph
                if att.paragraph < ep.n_paragraphs:
                    assert f"Paragraph {att.paragraph + 1}:" in msgs[att.message_index + 1]["content"]
        disc = [a for a in ep.attempts if a.phase == "discovery"]
        assert disc[-1].reward == 1 and all(a.reward == -1 for a in disc[:-1]) and 2 <= len(disc) <= 4


def test_accidental_successes_exist_but_are_occasional(episodes: list[Episode]) -> None:
    pre = [a for ep in episodes for a in ep.attempts if a.phase == "pre"]
    lucky = sum(a.reward == 1 for a in pre)
    assert 0.03 < lucky / len(pre) < 0.25


def test_position_labels_first_post_discovery(episodes: list[Episode]) -> None:
    for ep in episodes:
        crit = get_criterion(ep.criterion)
        first_post = next(a for a in ep.attempts if a.phase == "post")
        if crit.anchor is not None:
            assert ep.labels is None
            continue
        lab = ep.labels
        assert lab is not None and lab.message_index == first_post.message_index
        content = ep.messages[lab.message_index]["content"]
        assert lab.spans == first_post.spans and lab.paragraph_start == first_post.paragraph_start
        assert lab.before == (lab.paragraph_start, lab.spans[0][0])
        assert lab.after == (lab.spans[-1][1], len(content))
        for a, b in (lab.before, lab.after):
            assert b - a >= MIN_CONTEXT_CHARS and not crit.satisfied(content[a:b])


def test_heldout_split(episodes: list[Episode]) -> None:
    held = set(heldout_criteria(0))
    assert len(held) == 11
    for ep in episodes:
        assert ep.split == ("heldout" if ep.criterion in held else "train")
        wrong = {a.hypothesis for a in ep.attempts if a.hypothesis != ep.criterion}
        assert not wrong & held
    assert Counter(ep.split for ep in episodes)["heldout"] == 11 * 6


def test_contrasts_are_matched(contrasts: list[Contrast]) -> None:
    groups: dict[str, list[Contrast]] = defaultdict(list)
    for c in contrasts:
        groups[c.group_id].append(c)
    assert len(groups) >= 200
    for members in groups.values():
        by = {c.variant: c for c in members}
        assert set(by) == {"success", "failure", "control"}
        s, f, ctl = by["success"], by["failure"], by["control"]
        assert s.final_text == f.final_text == ctl.final_text
        assert len(s.messages) == len(f.messages) == len(ctl.messages)
        assert s.labels == f.labels == ctl.labels and s.labels.message_index == len(s.messages) - 1
        strategy = get_criterion(s.strategy)
        _, final_paragraph, _ = split_turn(s.final_text)
        assert strategy.satisfied(final_paragraph)
        for variant, want in ((s, 1), (f, -1)):
            hidden = get_criterion(variant.hidden or "")
            assert variant.prior_rewards == (want,) * variant.n_prior
            assert variant.expected_reward == want == (1 if hidden.satisfied(final_paragraph) else -1)
            for m in variant.messages:
                if m["role"] == "assistant" and m is not variant.messages[-1]:
                    assert (1 if hidden.satisfied(split_turn(m["content"])[1]) else -1) == want
        for ms, mf, mc in zip(s.messages, f.messages, ctl.messages, strict=True):
            if ms["content"] != mf["content"]:  # only the feedback characters differ
                assert ms["content"].replace("+1", "-1", 1) == mf["content"]
                assert mc["content"] == ms["content"].split("\n\n", 1)[1]
            else:
                assert mc == ms
        assert s.split == f.split == ctl.split
        assert (s.split == "heldout") == (s.strategy in heldout_criteria(0) and f.hidden in heldout_criteria(0))


def test_generator_reproduces_frozen_files(
    corpus: list[Paragraph], episodes: list[Episode], contrasts: list[Contrast]
) -> None:
    manifest = json.loads((FROZEN / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["heldout_criteria"] == list(heldout_criteria(0))
    records = {
        "corpus.jsonl": [{"id": p.id, "text": p.text, "topic": p.topic} for p in corpus],
        "episodes.jsonl": [e.to_json() for e in episodes],
        "contrasts.jsonl": [c.to_json() for c in contrasts],
    }
    for name, recs in records.items():
        text = dumps_jsonl(recs)
        assert sha256_text(text) == manifest["files"][name]["sha256"], f"{name} differs from the frozen file"
        assert manifest["files"][name]["records"] == len(recs)
