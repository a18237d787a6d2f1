"""The game that episodes and contrasts are both played in: its rules (the system message), the turn
format, the paper positions in a turn, and which criteria are held out.

A module of its own so that :mod:`valueagent.axis.episodes` (which writes both files) and
:mod:`valueagent.axis.contrasts` depend on it rather than on each other.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal

from valueagent.axis.criteria import Criterion, Span, all_criteria

MAX_ATTEMPTS = 5
CORPUS_SIZE = 600
MIN_CONTEXT_CHARS = 20
Split = Literal["train", "heldout"]
Message = dict[str, str]

_TURN = re.compile(r"<thinking>(.*?)</thinking>\n\n", re.DOTALL)


def system_prompt(n_paragraphs: int, max_attempts: int = MAX_ATTEMPTS) -> str:
    """The game's system message (``max_attempts=1`` is the one-attempt variant used by contrasts)."""
    if max_attempts == 1:
        rule = "You get one attempt per paragraph; together with my feedback I give you the next paragraph."
    else:
        rule = (
            f"After -1 you try the same paragraph again, up to {max_attempts} attempts; after +1, or after "
            f"{max_attempts} attempts, I give you the next paragraph."
        )
    return (
        f"We are playing a game with {n_paragraphs} paragraphs, given to you one at a time. Rewrite each "
        "paragraph so that it satisfies a hidden criterion that I have in mind. I will not tell you the "
        "criterion: work it out from my feedback.\n\nRules:\n"
        "- Reply with your reasoning in <thinking>...</thinking> tags, then only the rewritten paragraph.\n"
        '- After each attempt I answer "+1" if the rewrite satisfies the criterion and "-1" if it does not.\n'
        f"- {rule}\n"
        "- The criterion is the same for every paragraph, so use what you learn."
    )


def split_turn(content: str) -> tuple[str, str, int]:
    """Split an assistant turn into ``(thinking, paragraph, paragraph_start)`` (offset into ``content``)."""
    m = _TURN.match(content)
    if m is None:
        return "", content, 0
    return m.group(1), content[m.end():], m.end()


def format_turn(thinking: str, paragraph: str) -> str:
    """An assistant turn: reasoning in ``<thinking>`` tags, then the paragraph (:func:`split_turn` inverts it)."""
    return f"<thinking>{thinking}</thinking>\n\n{paragraph}"


@dataclass(frozen=True)
class PositionLabels:
    """Paper positions in one assistant message; all spans are ``(start, end)`` into its content."""

    message_index: int
    paragraph_start: int
    spans: tuple[Span, ...]
    before: Span
    after: Span


def position_labels(
    content: str, criterion: Criterion, message_index: int, *, min_chars: int = MIN_CONTEXT_CHARS
) -> PositionLabels | None:
    """Labels for the paragraph of ``content``; ``None`` when the criterion is unsatisfied or either
    side has fewer than ``min_chars`` characters (anchored criteria, for example)."""
    _, paragraph, off = split_turn(content)
    spans = criterion.spans(paragraph)
    if not spans or spans[0][0] < min_chars or len(paragraph) - spans[-1][1] < min_chars:
        return None
    return PositionLabels(
        message_index=message_index,
        paragraph_start=off,
        spans=tuple((off + a, off + b) for a, b in spans),
        before=(off, off + spans[0][0]),
        after=(off + spans[-1][1], len(content)),
    )


def heldout_criteria(seed: int = 0) -> tuple[str, ...]:
    """Criteria held out from construction: 3 syntactic (unanchored) and 8 semantic, seeded."""
    rng = random.Random(f"heldout:{seed}")
    syn = [c.id for c in all_criteria() if c.kind == "syntactic" and c.anchor is None]
    sem = [c.id for c in all_criteria() if c.kind == "semantic"]
    return tuple(sorted(rng.sample(syn, 3) + rng.sample(sem, 8)))
