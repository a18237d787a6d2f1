"""Hidden criteria for the value-axis paragraph games, each checked by code.

A :class:`Criterion` says in words what a rewrite must do ("include a dash"), checks a text
(``satisfied``), locates the satisfying substrings as character spans (``spans``, so token labels
"before the first / after the last satisfying token" follow from tokenizer offsets), and edits a
paragraph to satisfy it (insert a sentence that satisfies it and no other criterion) or to violate it.
``satisfied(text) == bool(spans(text))`` holds by construction.

Syntactic criteria are regular expressions; semantic ones ("mention a musical instrument") match
word lists from ``valueagent/data/axis_lexicon.json``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from typing import Literal

from valueagent.axis.corpus import insert_sentence, remove_sentences

__all__ = [
    "Anchor",
    "Criterion",
    "Kind",
    "Span",
    "all_criteria",
    "criterion_ids",
    "get_criterion",
    "satisfied_ids",
]

Span = tuple[int, int]
Kind = Literal["syntactic", "semantic"]
Anchor = Literal["start", "end"]


@dataclass(frozen=True)
class Criterion:
    """One hidden criterion. ``anchor`` is set for criteria tied to the start or end of the text,
    whose satisfying span has no text on one side (no before/after token labels for those)."""

    id: str
    kind: Kind
    statement: str
    locate: Callable[[str], list[Span]] = field(repr=False, compare=False)
    make_sentence: Callable[[random.Random], str] = field(repr=False, compare=False)
    anchor: Anchor | None = None
    repair: Callable[[str], str] | None = field(default=None, repr=False, compare=False)

    def spans(self, text: str) -> list[Span]:
        """Sorted character spans ``(start, end)`` of the substrings that satisfy the criterion."""
        return sorted(self.locate(text))

    def satisfied(self, text: str) -> bool:
        """Whether ``text`` satisfies the criterion."""
        return bool(self.locate(text))

    def sentence(self, rng: random.Random) -> str:
        """A sentence (for ``anchor="start"``: an opening phrase) that satisfies this criterion only."""
        return self.make_sentence(rng)

    def satisfy(self, text: str, rng: random.Random, *, index: int | None = None) -> str:
        """``text`` edited to satisfy the criterion: a satisfying sentence inserted between two
        sentences (before sentence ``index`` if given), prepended or appended for anchored ones."""
        if self.anchor == "start":
            body = self.violate(text) if self.satisfied(text) else text
            return self.sentence(rng) + _decap(body)
        if self.anchor == "end":
            return insert_sentence(text, self.sentence(rng), position="end")
        return insert_sentence(text, self.sentence(rng), position="middle", rng=rng, index=index)

    def violate(self, text: str) -> str:
        """``text`` rewritten so it no longer satisfies the criterion (character repairs where they
        keep the text readable, else the satisfying sentences are dropped)."""
        if self.repair is not None:
            text = self.repair(text)
        if self.satisfied(text):
            text = remove_sentences(text, self.spans(text))
        return text


def _decap(text: str) -> str:
    first = text.split(" ", 1)[0]
    if len(first) > 1 and first[1:].islower() and first != "I":
        return text[:1].lower() + text[1:]
    return text


def _regex(pattern: str, flags: int = 0, group: int = 0) -> Callable[[str], list[Span]]:
    rx = re.compile(pattern, flags)
    return lambda text: [m.span(group) for m in rx.finditer(text)]


def _pick(options: Sequence[str]) -> Callable[[random.Random], str]:
    return lambda rng: rng.choice(options)


_CLAUSES = (
    "the work went on as planned",
    "nobody said much about it",
    "the plan held up well",
    "the room stayed quiet",
    "progress was slow but real",
    "the idea slowly caught on",
    "everyone kept at it",
    "the results spoke for themselves",
    "the notes were filed away",
    "the doors stayed open late",
    "the schedule slipped a little",
    "the list kept growing",
)


def _clause_pair(fmt: str) -> Callable[[random.Random], str]:
    def make(rng: random.Random) -> str:
        a, b = rng.sample(_CLAUSES, 2)
        return fmt.format(a=a[:1].upper() + a[1:], b=b)

    return make


def _templated(templates: Sequence[str], values: Sequence[str]) -> Callable[[random.Random], str]:
    return lambda rng: rng.choice(templates).format(v=rng.choice(values))


_QUESTIONS = (
    "Was it worth all the effort?",
    "Who would have expected that?",
    "What else could they have done?",
    "How long could it really last?",
    "Why had nobody noticed sooner?",
    "Could it have gone any other way?",
    "Where would the money come from?",
    "Would the idea survive the winter?",
)
_VOWEL_OPENERS = (
    "Eventually, ", "Around that time, ", "After a while, ", "Even so, ", "As it turned out, ",
    "Overall, ", "Over time, ", "Once again, ", "Usually, ", "At some point, ", "In the end, ",
    "Oddly enough, ",
)
_NAMES = ("Hart", "Cole", "Reed", "Lowe", "Marsh", "Wade", "Hale", "Brook", "Fenn", "Mott")


def _digits(rng: random.Random) -> str:
    return rng.choice(
        (
            "The whole job took about {n} days.",
            "Roughly {n} people turned up to help.",
            "There were {n} boxes left to sort.",
            "The list had grown to {n} items.",
        )
    ).format(n=rng.randint(2, 99))


def _ampersand(rng: random.Random) -> str:
    a, b = rng.sample(_NAMES, 2)
    return rng.choice(
        ("The notice was signed by {a} & {b}.", "Supplies came from {a} & {b}, a small local firm.")
    ).format(a=a, b=b)


def _parenthetical(rng: random.Random) -> str:
    remark = rng.choice(
        ("or so it seemed", "at least for a while", "mostly", "more or less", "as expected", "with some help")
    )
    return f"{rng.choice(_CLAUSES).capitalize()} ({remark})."


def _strip_vowel_opener(text: str) -> str:
    for opener in _VOWEL_OPENERS:
        if text.startswith(opener):
            rest = text[len(opener):]
            return rest[:1].upper() + rest[1:]
    return "Then, " + _decap(text.lstrip())


def _syntactic() -> list[Criterion]:
    s: Kind = "syntactic"
    return [
        Criterion("dash", s, "include a dash", _regex(r"—|–|(?<=\s)-(?=\s)"),
                  _clause_pair("{a} — {b}."), repair=lambda t: re.sub(r"\s*[—–]\s*|\s+-\s+", ", ", t)),
        Criterion("hyphenated_word", s, "use a hyphenated word",
                  _regex(r"\b[A-Za-z]+(?:-[A-Za-z]+)+\b"),
                  _templated(("It was a {v} effort from start to finish.",
                              "The plan turned out to be a {v} success.",
                              "Everyone agreed it was a {v} decision."),
                             ("well-planned", "long-term", "hard-won", "short-lived", "open-ended",
                              "clear-cut", "low-key", "last-minute", "full-scale", "small-scale")),
                  repair=lambda t: re.sub(r"(?<=[A-Za-z])-(?=[A-Za-z])", " ", t)),
        Criterion("question", s, "ask a question", _regex(r"\?"), _pick(_QUESTIONS)),
        Criterion("ends_with_question", s, "end the paragraph with a question",
                  lambda t: [(len(t.rstrip()) - 1, len(t.rstrip()))] if t.rstrip().endswith("?") else [],
                  _pick(_QUESTIONS), anchor="end"),
        Criterion("digit", s, "include a number written in digits", _regex(r"\d+"), _digits),
        Criterion("all_caps_word", s, "write a word in all capital letters", _regex(r"\b[A-Z]{2,}\b"),
                  _templated(("It was {v} important to get this right.",
                              "Nobody was {v} sure how it would end.", "The deadline was {v} close."),
                             ("VERY", "REALLY", "TRULY", "EXTREMELY")),
                  repair=lambda t: re.sub(r"\b[A-Z]{2,}\b", lambda m: m.group(0).lower(), t)),
        Criterion("semicolon", s, "use a semicolon", _regex(";"), _clause_pair("{a}; {b}."),
                  repair=lambda t: t.replace(";", ",")),
        Criterion("parentheses", s, "include a remark in parentheses", _regex(r"\([^()]*\)"),
                  _parenthetical, repair=lambda t: re.sub(r"\s*\([^()]*\)", "", t)),
        Criterion("quotation", s, "include a direct quotation in double quotes",
                  _regex(r"\"[^\"\n]+\"|“[^”\n]+”"),
                  lambda rng: rng.choice(('A person simply said "{q}" and left it there.',
                                          'The note on the door read "{q}" in large letters.',
                                          'Someone kept repeating "{q}" to the others.')).format(
                      q=rng.choice(("keep going", "not yet", "good enough", "try again", "almost there",
                                    "well done"))),
                  repair=lambda t: re.sub("[\"“”]", "", t)),
        Criterion("exclamation", s, "use an exclamation mark", _regex("!"),
                  lambda rng: rng.choice(("What a week it had been!", "It actually worked!",
                                          "Nobody could believe it!", rng.choice(_CLAUSES).capitalize() + "!")),
                  repair=lambda t: t.replace("!", ".")),
        Criterion("colon", s, "use a colon", _regex(":"),
                  lambda rng: rng.choice(("The reason was simple: {b}.", "The lesson was clear: {b}.",
                                          "The outcome was plain to see: {b}.")).format(
                      b=rng.choice(_CLAUSES)),
                  repair=lambda t: t.replace(":", ",")),
        Criterion("ellipsis", s, "include an ellipsis", _regex(r"\.\.\.|…"), _clause_pair("{a}... {b}."),
                  repair=lambda t: re.sub(r"\.\.\.|…", ",", t)),
        Criterion("starts_with_vowel", s, "begin the paragraph with a word that starts with a vowel",
                  _regex(r"^\s*([AEIOUaeiou][A-Za-z']*)", group=1), _pick(_VOWEL_OPENERS),
                  anchor="start", repair=_strip_vowel_opener),
        Criterion("long_word", s, "use a word of at least fourteen letters", _regex(r"\b[A-Za-z]{14,}\b"),
                  _templated(("The result was {v} tidy.", "It was {v} hard to keep track of everything."),
                             ("extraordinarily", "overwhelmingly", "disproportionately",
                              "uncharacteristically", "unquestionably", "incomprehensibly",
                              "unapologetically", "counterintuitively"))),
        Criterion("repeated_word", s, "repeat a word twice in a row",
                  _regex(r"\b(\w+)\s+\1\b", re.IGNORECASE),
                  _pick(("It took a long long time to finish.", "The change was very very gradual.",
                         "The room was quiet, really really quiet.",
                         "Things moved far far more slowly than planned.")),
                  repair=lambda t: re.sub(r"\b(\w+)(?:\s+\1\b)+", r"\1", t, flags=re.IGNORECASE)),
        Criterion("contraction", s, "use a contraction such as didn't",
                  _regex(r"\b[A-Za-z]+['’](?:t|s|re|ve|ll|d|m)\b"),
                  lambda rng: rng.choice(("{a}, but it didn't matter much.", "It wasn't easy, but it worked.",
                                          "They couldn't have done it alone.",
                                          "It's hard to say what changed most.")).format(
                      a=rng.choice(_CLAUSES).capitalize())),
        Criterion("ampersand", s, "include an ampersand", _regex("&"), _ampersand,
                  repair=lambda t: t.replace(" & ", " and ").replace("&", "and")),
    ]


_U_AS_YOU = ("ukulele", "unicorn", "euro")


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" and word.lower() not in _U_AS_YOU else "a"


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u"):
        return word[:-1] + "ies"
    return word + "s"


_WORD = re.compile(r"[A-Za-z]+")


@lru_cache(maxsize=4096)
def _word_tokens(text: str) -> tuple[tuple[Span, str], ...]:
    return tuple((m.span(), m.group(0).lower()) for m in _WORD.finditer(text))


def _wordset(forms: set[str]) -> Callable[[str], list[Span]]:
    """Locator for whole words (case-insensitive) from ``forms``; one cached tokenization per text."""
    lowered = frozenset(f.lower() for f in forms)
    return lambda text: [span for span, w in _word_tokens(text) if w in lowered]


def _semantic_sentence(words: Sequence[str], frames: Sequence[str]) -> Callable[[random.Random], str]:
    def make(rng: random.Random) -> str:
        w = rng.choice(words)
        return rng.choice(frames).format(w=w, a=_article(w), A=_article(w).capitalize())

    return make


def _semantic() -> list[Criterion]:
    raw = resources.files("valueagent").joinpath("data/axis_lexicon.json").read_text(encoding="utf-8")
    out = []
    for entry in json.loads(raw)["semantic"]:
        forms = {f for w in entry["words"] for f in (w, _plural(w))} | set(entry["extra"])
        out.append(
            Criterion(entry["id"], "semantic", entry["statement"], _wordset(forms),
                      _semantic_sentence(entry["words"], entry["frames"]))
        )
    return out


@cache
def all_criteria() -> tuple[Criterion, ...]:
    """Every criterion, syntactic first, in a fixed order."""
    return tuple(_syntactic() + _semantic())


def criterion_ids(kind: Kind | None = None) -> tuple[str, ...]:
    """Ids of all criteria (of one ``kind`` if given), in the fixed order."""
    return tuple(c.id for c in all_criteria() if kind is None or c.kind == kind)


def get_criterion(criterion_id: str) -> Criterion:
    """The criterion with this id; raises ``KeyError`` naming the known ids otherwise."""
    for c in all_criteria():
        if c.id == criterion_id:
            return c
    raise KeyError(f"unknown criterion {criterion_id!r}; known: {', '.join(criterion_ids())}")


def satisfied_ids(text: str) -> tuple[str, ...]:
    """Ids of the criteria that ``text`` satisfies."""
    return tuple(c.id for c in all_criteria() if c.satisfied(text))
