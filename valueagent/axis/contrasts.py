"""Matched-token contrasts: identical assistant text at the same place, under histories that make
success or failure expected, plus a no-reward control.

Each group shares one script: K (2-3) earlier paragraphs, each rewritten with the same strategy S
(a criterion the player applies), then a final paragraph rewritten with S. The variants differ only in
the feedback the user gave on the earlier rewrites:

- ``success``: the hidden criterion is S, so every earlier rewrite scored ``+1`` (checker-verified);
- ``failure``: the hidden criterion is another criterion that none of the rewrites satisfies, so every
  earlier rewrite scored ``-1``;
- ``control``: no feedback lines at all (the user only hands over the next paragraph).

The game is the one-attempt variant (``system_prompt(n, max_attempts=1)``), so the success and failure
conversations have the same messages except the ``+1``/``-1`` characters; their final assistant
messages are identical strings, and a difference of means over those tokens isolates value from
position and content. (The control is shorter by the feedback lines.)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from valueagent.axis.corpus import Paragraph, generate_corpus, sample_distinct_topics
from valueagent.axis.criteria import Criterion, all_criteria
from valueagent.axis.game import (
    CORPUS_SIZE,
    Message,
    PositionLabels,
    Split,
    heldout_criteria,
    position_labels,
    system_prompt,
)

__all__ = ["CONTRASTS_PER_CRITERION", "Contrast", "Variant", "generate_contrasts"]

CONTRASTS_PER_CRITERION = 4
Variant = Literal["success", "failure", "control"]

_PRIOR = (
    "My working guess is that the criterion is to {h}. I will {h} in this paragraph.",
    "I think the hidden criterion is to {h}. I will rewrite the paragraph to {h}.",
)
_FINAL = (
    "I will stay with the same approach and {h} again.",
    "Same plan as before: the rewrite should {h}.",
)


@dataclass(frozen=True)
class Contrast:
    """One variant of a matched group. ``messages[-1]`` is the shared final assistant turn;
    ``labels`` marks the strategy's spans in it (same for all variants of a group)."""

    id: str
    group_id: str
    variant: Variant
    strategy: str  # criterion id the player applies throughout
    hidden: str | None  # criterion the rewards came from (None for the control)
    split: Split
    n_prior: int
    prior_rewards: tuple[int, ...]  # checker rewards shown for the earlier rewrites (empty: control)
    expected_reward: int | None  # checker reward the final rewrite would get under ``hidden``
    messages: tuple[Message, ...]
    labels: PositionLabels

    @property
    def final_text(self) -> str:
        """The final assistant message (identical across the variants of a group)."""
        return self.messages[-1]["content"]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return asdict(self)


def _conversation(
    bases: Sequence[str], turns: Sequence[str], feedback: Sequence[str] | None
) -> tuple[Message, ...]:
    msgs: list[Message] = [
        {"role": "system", "content": system_prompt(len(bases), max_attempts=1)},
        {"role": "user", "content": f"Paragraph 1:\n\n{bases[0]}"},
    ]
    for i, turn in enumerate(turns):
        msgs.append({"role": "assistant", "content": turn})
        if i + 1 < len(turns):
            head = f"{feedback[i]}\n\n" if feedback is not None else ""
            msgs.append({"role": "user", "content": f"{head}Paragraph {i + 2}:\n\n{bases[i + 1]}"})
    return tuple(msgs)


def _group(
    gid: str, strategy: Criterion, pool: Sequence[Criterion], split: Split, corpus: Sequence[Paragraph],
    rng: random.Random,
) -> list[Contrast]:
    k = rng.randint(2, 3)
    bases = [p.text for p in sample_distinct_topics(corpus, k + 1, rng)]
    rewrites = [strategy.satisfy(b, rng) for b in bases]
    others = [c for c in pool if c.id != strategy.id and not any(c.satisfied(r) for r in rewrites)]
    failure_hidden = rng.choice(others)
    turns = [f"<thinking>{rng.choice(_PRIOR).format(h=strategy.statement)}</thinking>\n\n{r}" for r in rewrites[:-1]]
    turns.append(f"<thinking>{rng.choice(_FINAL).format(h=strategy.statement)}</thinking>\n\n{rewrites[-1]}")
    labels = position_labels(turns[-1], strategy, 2 * len(turns))
    if labels is None:
        raise RuntimeError(f"strategy {strategy.id!r} left no text around its span; use unanchored criteria")
    out = []
    plan: tuple[tuple[Variant, Criterion | None], ...] = (
        ("success", strategy), ("failure", failure_hidden), ("control", None)
    )
    for variant, hidden in plan:
        rewards = tuple(1 if hidden.satisfied(r) else -1 for r in rewrites) if hidden else ()
        feedback = [("+1" if x == 1 else "-1") for x in rewards[:-1]] if hidden else None
        msgs = _conversation(bases, turns, feedback)
        out.append(Contrast(
            id=f"{gid}-{variant}", group_id=gid, variant=variant,
            strategy=strategy.id, hidden=hidden.id if hidden else None, split=split, n_prior=k,
            prior_rewards=rewards[:-1], expected_reward=rewards[-1] if hidden else None,
            messages=msgs, labels=labels,
        ))
    return out


def generate_contrasts(
    seed: int = 0, *, per_criterion: int = CONTRASTS_PER_CRITERION, corpus: Sequence[Paragraph] | None = None
) -> list[Contrast]:
    """``per_criterion`` groups (3 variants each) for every unanchored criterion, deterministic in ``seed``.

    Strategy and failure criterion come from the same split (held-out strategies are only contrasted
    with held-out criteria), so the held-out contrasts never touch training criteria.
    """
    corpus = list(corpus) if corpus is not None else generate_corpus(CORPUS_SIZE, seed=seed)
    held = set(heldout_criteria(seed))
    out: list[Contrast] = []
    for crit in all_criteria():
        if crit.anchor is not None:
            continue
        split: Split = "heldout" if crit.id in held else "train"
        pool = [c for c in all_criteria() if (c.id in held) == (split == "heldout")]
        for k in range(per_criterion):
            rng = random.Random(f"contrast:{seed}:{crit.id}:{k}")
            out.extend(_group(f"{crit.id}-{k}", crit, pool, split, corpus, rng))
    return out
