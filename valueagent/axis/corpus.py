"""A seeded paragraph generator for the value-axis games, and sentence-level text edits.

The paragraphs are the project's own (Apache-2.0): a small grammar fills sentence templates from a
topic lexicon (``valueagent/data/axis_topics.json``) that avoids every hidden-criterion word class and
all punctuation except periods and commas. A generated paragraph therefore satisfies no criterion, so
which criteria a rewrite satisfies is decided only by what the rewrite inserts.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

__all__ = [
    "Paragraph",
    "generate_corpus",
    "generate_paragraph",
    "insert_sentence",
    "remove_sentences",
    "sample_distinct_topics",
    "sentence_bounds",
    "word_count",
]

_OPENERS = (
    "{Place} had been {adj} for most of the {period}.",
    "For years, {place} was known mainly for {thing}.",
    "Few people expected much from {place} when the project began.",
    "Not long ago, {group} at {place} decided to try something new.",
    "There was a time when {place} was easy to overlook.",
    "Plans for {place} started with a simple idea about {goal}.",
    "Last {period}, {group} set out to improve {place}.",
)
_BODY = (
    "{Group} spent long afternoons {act}.",
    "Much of the effort went into {act}.",
    "{Group} soon noticed that {problem} kept slowing everything down.",
    "To deal with {problem}, they began {act}.",
    "Several neighbours brought {thing} to help.",
    "The aim was {goal}, even if progress came slowly.",
    "Some days were spent simply {act}.",
    "Visitors often stopped to ask about {thing}.",
    "Nobody had planned for {problem}, but it turned out to be manageable.",
    "By then, {group} had become good at {act}.",
    "{Place} felt {adj} and full of purpose.",
    "Small changes, such as {act}, made a real difference.",
    "Later, {group} talked about {goal} as if it were already finished.",
    "Keeping track of {thing} took more time than expected.",
    "With patience, the problem of {problem} slowly faded.",
    "Most of the credit went to {group}, who rarely complained.",
    "People passing by could see {group} {act}.",
    "Each small step brought {place} closer to {goal}.",
    "Money was tight, so {group} made do with {thing} they already had.",
    "Not everything went smoothly, and {problem} caused a few delays.",
    "A few regular visitors started helping with {act}.",
    "There was always more to do, from {act} to {act2}.",
    "Good records were kept of {thing} and how they were used.",
    "{Group} met regularly to talk about {goal}.",
    "Nobody expected {thing} to matter so much.",
)
_CLOSERS = (
    "{Place} ended the {period} in better condition than it began.",
    "Today, {place} shows what steady work can achieve.",
    "Looking back, {group} agreed that the effort had been worth it.",
    "Slowly, the plan for {goal} became something real.",
    "Now the story of {place} is told to anyone who asks.",
    "The work is not finished, but {place} is clearly on the right track.",
)
_PERIODS = ("year", "season", "decade", "summer")

# A sentence ends at . ! ? (optionally followed by a closing quote or bracket) before whitespace and
# a capital letter or an opening quote/bracket; "... and" (an ellipsis mid-sentence) does not split.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z\"(\[])")
_WORD = re.compile(r"[A-Za-z0-9']+(?:-[A-Za-z0-9']+)*")


@dataclass(frozen=True)
class Paragraph:
    """One generated paragraph: ``id`` is stable for a seed, ``topic`` names its lexicon entry."""

    id: str
    topic: str
    text: str


@cache
def _topics() -> tuple[dict[str, Any], ...]:
    raw = resources.files("valueagent").joinpath("data/axis_topics.json").read_text(encoding="utf-8")
    return tuple(json.loads(raw)["topics"])


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def word_count(text: str) -> int:
    """Number of words (hyphenated words and contractions count once)."""
    return len(_WORD.findall(text))


class _Slots:
    """Topic words for one paragraph, each list dealt round-robin from a shuffled copy so that a
    paragraph repeats a phrase only after using all the others."""

    def __init__(self, topic: dict[str, Any], rng: random.Random) -> None:
        self._rng = rng
        self._topic = topic
        self._decks: dict[str, list[str]] = {}

    def _deal(self, key: str) -> str:
        deck = self._decks.get(key)
        if not deck:
            deck = self._decks[key] = self._rng.sample(self._topic[key], len(self._topic[key]))
        return deck.pop()

    def fill(self, template: str) -> str:
        t = self._topic
        act = self._deal("acts")
        act2 = self._deal("acts") if "{act2}" in template else act
        return template.format(
            place=t["place"], Place=_cap(t["place"]), group=t["group"], Group=_cap(t["group"]),
            thing=self._deal("things"), act=act, act2=act2, goal=self._deal("goals"),
            problem=self._deal("problems"), adj=self._deal("adjs"), period=self._rng.choice(_PERIODS),
        )


def generate_paragraph(
    rng: random.Random, *, min_words: int = 55, max_words: int = 120, topic: str | None = None
) -> tuple[str, str]:
    """Return ``(topic_id, text)``: an opener, body sentences and a closer, ``min_words..max_words`` long.

    The first word never starts with a vowel and the text ends with a period, so the anchored criteria
    ("start with a vowel", "end with a question") are unsatisfied.
    """
    topics = _topics()
    entry = next(t for t in topics if t["id"] == topic) if topic else rng.choice(topics)
    target = rng.randint(min_words, max_words)
    while True:
        slots = _Slots(entry, rng)
        opener = slots.fill(rng.choice(_OPENERS))
        closer = slots.fill(rng.choice(_CLOSERS))
        body: list[str] = []
        for template in rng.sample(_BODY, len(_BODY)):
            if word_count(" ".join([opener, *body, closer])) >= target:
                break
            body.append(slots.fill(template))
        text = " ".join([opener, *body, closer])
        if min_words <= word_count(text) <= max_words:
            return entry["id"], text
        target = rng.randint(min_words, max_words)


def generate_corpus(n: int, *, seed: int = 0, min_words: int = 55, max_words: int = 120) -> list[Paragraph]:
    """``n`` paragraphs from a seeded generator, cycling through the topics for variety."""
    rng = random.Random(f"corpus:{seed}")
    topics = [t["id"] for t in _topics()]
    out: list[Paragraph] = []
    for i in range(n):
        topic = topics[i % len(topics)] if i < len(topics) else rng.choice(topics)
        tid, text = generate_paragraph(rng, min_words=min_words, max_words=max_words, topic=topic)
        out.append(Paragraph(id=f"P{seed}-{i:04d}", topic=tid, text=text))
    return out


def sample_distinct_topics(corpus: Sequence[Paragraph], n: int, rng: random.Random) -> list[Paragraph]:
    """``n`` paragraphs of ``corpus`` with pairwise different topics (while topics last), seeded."""
    picked: list[Paragraph] = []
    seen: set[str] = set()
    for p in rng.sample(list(corpus), len(corpus)):
        if p.topic not in seen:
            picked.append(p)
            seen.add(p.topic)
            if len(picked) == n:
                return picked
    raise ValueError(f"the corpus has fewer than {n} topics")


def sentence_bounds(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text`` (end exclusive, no separators)."""
    bounds: list[tuple[int, int]] = []
    start = len(text) - len(text.lstrip())
    for m in _SENTENCE_END.finditer(text):
        gap = m.group(0)
        end = m.start() + len(gap) - len(gap.lstrip("\"')]"))
        if end > start:
            bounds.append((start, end))
        start = m.end()
    tail_end = len(text.rstrip())
    if tail_end > start:
        bounds.append((start, tail_end))
    return bounds


def insert_sentence(
    text: str,
    sentence: str,
    *,
    position: Literal["middle", "start", "end"] = "middle",
    rng: random.Random | None = None,
    index: int | None = None,
) -> str:
    """Insert ``sentence`` between sentences of ``text``.

    ``middle`` puts it after at least one and before at least one existing sentence (seeded choice
    with ``rng``, or exactly before sentence ``index``); ``start``/``end`` prepend/append it.
    """
    parts = [text[a:b] for a, b in sentence_bounds(text)]
    if position == "start":
        k = 0
    elif position == "end" or len(parts) < 2:
        k = len(parts)
    elif index is not None:
        k = min(max(index, 1), len(parts) - 1)
    else:
        k = (rng or random.Random(0)).randint(1, len(parts) - 1)
    return " ".join([*parts[:k], sentence, *parts[k:]])


def remove_sentences(text: str, spans: list[tuple[int, int]]) -> str:
    """Drop every sentence that overlaps one of ``spans`` (character offsets into ``text``)."""
    kept = [
        text[a:b]
        for a, b in sentence_bounds(text)
        if not any(s < b and e > a for s, e in spans)
    ]
    return " ".join(kept)
