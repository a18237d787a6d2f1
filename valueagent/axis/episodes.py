"""Hidden-criterion in-context-RL games (the paper's construction data), generated offline.

A player rewrites 3-8 paragraphs to satisfy one hidden criterion; the user answers only ``+1``/``-1``
(at most 5 attempts per paragraph). Before a discovery paragraph (2nd-6th) the player follows wrong
hypotheses; on it, after 1-3 misses, it finds the criterion; after it, it states the criterion and
satisfies it first try. Every reward is computed by the criterion's checker on the rewritten paragraph
(an occasional accidental ``+1`` before discovery is real: the rewrite happened to satisfy it).

For the FIRST post-discovery paragraph, :class:`PositionLabels` give the paper's positions as
character spans of the assistant message: ``before`` = paragraph text strictly before the first
satisfying span, ``after`` = text strictly after the last one. Map them to tokens with the tokenizer's
offsets. Matched-token contrasts live in :mod:`valueagent.axis.contrasts`.

Recipe: ``python -m valueagent.axis.episodes --seed 0 --out tasks/episodes``.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from valueagent.axis.corpus import Paragraph, generate_corpus, sample_distinct_topics
from valueagent.axis.criteria import Criterion, Span, all_criteria
from valueagent.axis.game import (
    CORPUS_SIZE,
    MAX_ATTEMPTS,
    MIN_CONTEXT_CHARS,
    Message,
    PositionLabels,
    Split,
    format_turn,
    heldout_criteria,
    position_labels,
    split_turn,
    system_prompt,
)

__all__ = [
    "CORPUS_SIZE",
    "MAX_ATTEMPTS",
    "MIN_CONTEXT_CHARS",
    "Message",
    "Split",
    "Attempt",
    "Episode",
    "PositionLabels",
    "generate_episodes",
    "heldout_criteria",
    "position_labels",
    "split_turn",
    "system_prompt",
]

EPISODES_PER_CRITERION = 6
ACCIDENT_RATE = 0.12
Phase = Literal["pre", "discovery", "post"]


@dataclass(frozen=True)
class Attempt:
    """One assistant turn: the hypothesis it acted on, the checker's reward, the hidden spans."""

    message_index: int
    paragraph: int  # 1-based
    attempt: int  # 1-based
    phase: Phase
    hypothesis: str  # criterion id the player meant to satisfy
    reward: int  # +1 / -1, from the checker
    paragraph_start: int
    spans: tuple[Span, ...]  # hidden-criterion spans in the message content


@dataclass(frozen=True)
class Episode:
    """One game. ``labels`` marks the first post-discovery paragraph (``None`` for anchored criteria)."""

    id: str
    criterion: str
    kind: str
    split: Split
    n_paragraphs: int
    discovery_paragraph: int  # 1-based
    paragraph_ids: tuple[str, ...]
    messages: tuple[Message, ...]
    attempts: tuple[Attempt, ...]
    labels: PositionLabels | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return asdict(self)


_FIRST = (
    "I have no feedback yet, so I need a starting guess. Perhaps the criterion is to {h}. "
    "I will {h} and see how it scores.",
    "Nothing to go on yet. A simple first hypothesis is that I should {h}. Let me try that.",
)
_AFTER_MISS = (
    "That scored -1, so the idea to {p} is probably wrong. Maybe the criterion is to {h}. "
    "I will try that instead.",
    "The attempt to {p} got -1. A different idea: the criterion may be to {h}. "
    "Let me test it on this paragraph.",
    "Still -1. I am dropping the idea that I need to {p}. My next guess is that I should {h}.",
)
_AFTER_LUCK = (
    "The last rewrite got +1 when I chose to {h}. That suggests the criterion is to {h}. "
    "I will do the same here.",
    "My previous attempt earned +1, and I had tried to {h}. I will keep that strategy for this paragraph.",
)
_DISCOVER = (
    "None of my guesses have held up. Looking at the feedback again, maybe the criterion is to {h}. "
    "I am not certain, but I will try it.",
    "I keep getting -1 with these ideas. A new possibility is that the criterion is to {h}. "
    "I will test it carefully on this paragraph.",
)
_KNOWN = (
    "The criterion is to {h}; that earned +1 before. I will {h} again.",
    "I am confident the hidden criterion is to {h}. I will rewrite the paragraph so that it does this.",
    "The feedback confirms that I need to {h}. I will do exactly that here.",
)


def _think(rng: random.Random, options: Sequence[str], h: Criterion, p: Criterion | None = None) -> str:
    return rng.choice(options).format(h=h.statement, p=p.statement if p else "")


def _wrong_rewrite(
    text: str, hyp: Criterion, hidden: Criterion, rng: random.Random, *, accident: bool
) -> str | None:
    """``hyp`` applied to ``text``; with ``accident`` the hidden criterion is also satisfied (by an
    incidental sentence), without it the result must miss the hidden criterion (else ``None``)."""
    rewrite = hyp.satisfy(text, rng)
    if accident and not hidden.satisfied(rewrite):
        rewrite = hidden.satisfy(rewrite, rng)
    if not hyp.satisfied(rewrite) or hidden.satisfied(rewrite) != accident:
        return None
    return rewrite


def _next_wrong(
    text: str, hidden: Criterion, keep: Criterion | None, order: list[Criterion], rng: random.Random,
    *, accident: bool,
) -> tuple[Criterion, str, bool]:
    """Hypothesis and rewrite of a pre-discovery attempt: ``keep`` (the hypothesis that just earned a
    lucky +1) if it fits, else the next in ``order``; the flag says whether ``keep`` was used."""
    if keep is not None:
        rewrite = _wrong_rewrite(text, keep, hidden, rng, accident=accident)
        if rewrite is not None:
            return keep, rewrite, True
    for _ in range(4 * len(order)):
        hyp = order.pop(0)
        order.append(hyp)
        rewrite = _wrong_rewrite(text, hyp, hidden, rng, accident=accident)
        if rewrite is not None:
            return hyp, rewrite, False
    raise RuntimeError(f"no wrong hypothesis fits hidden criterion {hidden.id!r}")


def _play(
    eid: str, hidden: Criterion, split: Split, pool: Sequence[Criterion], paragraphs: Sequence[Paragraph],
    rng: random.Random,
) -> Episode:
    n = len(paragraphs)
    disc = rng.randint(2, min(6, n - 1))
    hyps = [c for c in pool if c.id != hidden.id]
    order = rng.sample(hyps, len(hyps))
    messages: list[Message] = [{"role": "system", "content": system_prompt(n)}]
    attempts: list[Attempt] = []
    labels: PositionLabels | None = None
    prev: Criterion | None = None
    last_reward = 0
    pending = f"Paragraph 1:\n\n{paragraphs[0].text}"
    for p_idx, para in enumerate(paragraphs, start=1):
        phase: Phase = "pre" if p_idx < disc else ("discovery" if p_idx == disc else "post")
        misses = rng.randint(1, 3) if phase == "discovery" else 0
        for a_idx in range(1, MAX_ATTEMPTS + 1):
            if phase == "post" or (phase == "discovery" and a_idx > misses):
                hyp = hidden
                thinking = _think(rng, _KNOWN if phase == "post" else _DISCOVER, hidden)
                rewrite = hidden.satisfy(para.text, rng)
            else:
                accident = phase == "pre" and rng.random() < ACCIDENT_RATE
                keep = prev if last_reward == 1 else None
                hyp, rewrite, kept = _next_wrong(para.text, hidden, keep, order, rng, accident=accident)
                if kept:
                    thinking = _think(rng, _AFTER_LUCK, hyp)
                elif prev is None:
                    thinking = _think(rng, _FIRST, hyp)
                else:
                    thinking = _think(rng, _AFTER_MISS, hyp, prev)
            reward = 1 if hidden.satisfied(rewrite) else -1
            content = format_turn(thinking, rewrite)
            messages.append({"role": "user", "content": pending})
            messages.append({"role": "assistant", "content": content})
            _, _, off = split_turn(content)
            attempts.append(Attempt(
                message_index=len(messages) - 1, paragraph=p_idx, attempt=a_idx, phase=phase,
                hypothesis=hyp.id, reward=reward, paragraph_start=off,
                spans=tuple((off + a, off + b) for a, b in hidden.spans(rewrite)),
            ))
            if phase == "post" and labels is None:
                labels = position_labels(content, hidden, len(messages) - 1)
            prev, last_reward = hyp, reward
            feedback = "+1" if reward == 1 else "-1"
            if reward == 1 or a_idx == MAX_ATTEMPTS:
                nxt = f"\n\nParagraph {p_idx + 1}:\n\n{paragraphs[p_idx].text}" if p_idx < n else ""
                pending = feedback + nxt
                break
            pending = feedback
    messages.append({"role": "user", "content": pending})
    return Episode(
        id=eid, criterion=hidden.id, kind=hidden.kind, split=split, n_paragraphs=n,
        discovery_paragraph=disc, paragraph_ids=tuple(p.id for p in paragraphs),
        messages=tuple(messages), attempts=tuple(attempts), labels=labels,
    )


def generate_episodes(
    seed: int = 0, *, per_criterion: int = EPISODES_PER_CRITERION, corpus: Sequence[Paragraph] | None = None
) -> list[Episode]:
    """``per_criterion`` games for every criterion (55 x 6 = 330 by default), deterministic in ``seed``.

    Wrong hypotheses come from the training criteria only, so held-out criteria never appear in a
    training game, even as a miss.
    """
    corpus = list(corpus) if corpus is not None else generate_corpus(CORPUS_SIZE, seed=seed)
    held = set(heldout_criteria(seed))
    train_pool = [c for c in all_criteria() if c.id not in held]
    episodes = []
    for crit in all_criteria():
        split: Split = "heldout" if crit.id in held else "train"
        for k in range(per_criterion):
            rng = random.Random(f"episode:{seed}:{crit.id}:{k}")
            paragraphs = sample_distinct_topics(corpus, rng.randint(3, 8), rng)
            episodes.append(_play(f"{crit.id}-{k}", crit, split, train_pool, paragraphs, rng))
    return episodes


def _main(argv: Sequence[str] | None = None) -> None:
    from valueagent.axis.contrasts import generate_contrasts
    from valueagent.axis.frozen import write_frozen

    parser = argparse.ArgumentParser(description="Write the frozen value-axis episodes.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    corpus = generate_corpus(CORPUS_SIZE, seed=args.seed)
    episodes = generate_episodes(args.seed, corpus=corpus)
    contrasts = generate_contrasts(args.seed, corpus=corpus)
    crits = [{"id": c.id, "kind": c.kind, "statement": c.statement, "anchor": c.anchor} for c in all_criteria()]
    manifest = write_frozen(
        args.out,
        {
            "criteria.jsonl": crits,
            "corpus.jsonl": [asdict(p) for p in corpus],
            "episodes.jsonl": [e.to_json() for e in episodes],
            "contrasts.jsonl": [c.to_json() for c in contrasts],
        },
        recipe=f"python -m valueagent.axis.episodes --seed {args.seed} --out {args.out.as_posix()}",
        extra={"seed": args.seed, "heldout_criteria": list(heldout_criteria(args.seed))},
    )
    print(f"wrote {args.out} data_sha256={manifest['data_sha256']}")


if __name__ == "__main__":
    _main()
