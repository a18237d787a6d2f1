"""Turn the value-axis datasets into texts with spans (:class:`TextJob`) for one teacher-forced pass.

Every text is a chat rendered with the model's own template; a span's characters are located in the
rendered text by rendering the conversation up to the turn and appending the turn's content, so the
assistant turn is tokenized exactly as the model would have produced it.

Episodes are cut for compute (CPU): the system prompt, then everything from the discovery paragraph
up to the first post-discovery paragraph (the labelled one). The model still sees the misses and the
``+1`` of the discovery and its own statement of the criterion; what is cut is earlier paragraphs,
which end before the labelled tokens and do not differ between "before" and "after" tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from valueagent.axis.activations import Span, TextJob

Context = Literal["discovery", "full"]
CODE_INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function (including the signature) "
    "in a single ```python code block."
)


def _render(tokenizer: Any, messages: Sequence[Mapping[str, str]], content: str) -> tuple[str, int]:
    """Text of ``messages`` (ending with the assistant generation prompt) + ``content``; content offset."""
    from valueagent.runtime.loading import render_chat

    head = render_chat(tokenizer, list(messages), add_generation_prompt=True)
    return head + content, len(head)


def episode_job(tokenizer: Any, episode: Mapping[str, Any], *, keep_tokens: bool,
                context: Context = "discovery") -> TextJob | None:
    """Spans ``before``/``after`` (the paper's positions) and ``paragraph`` of the first post-discovery
    paragraph; None for episodes without position labels (anchored criteria)."""
    labels = episode.get("labels")
    if not labels:
        return None
    msgs = list(episode["messages"])
    mi = int(labels["message_index"])
    history = msgs[:mi]
    if context == "discovery":
        first = min(a["message_index"] for a in episode["attempts"] if a["phase"] == "discovery")
        history = [msgs[0], *msgs[first - 1 : mi]] if msgs[0]["role"] == "system" else msgs[first - 1 : mi]
    content = msgs[mi]["content"]
    text, off = _render(tokenizer, history, content)
    (b0, b1), (a0, a1) = labels["before"], labels["after"]
    return TextJob(
        key=f"episode:{episode['id']}:{context}",
        text=text,
        spans=(
            Span("before", off + b0, off + b1, keep_tokens),
            Span("after", off + a0, off + a1, keep_tokens),
            Span("paragraph", off + int(labels["paragraph_start"]), off + len(content)),
        ),
    )


def contrast_job(tokenizer: Any, contrast: Mapping[str, Any]) -> TextJob:
    """The final assistant turn (identical across a group's variants) as span ``final``."""
    msgs = list(contrast["messages"])
    mi = int(contrast["labels"]["message_index"])
    content = msgs[mi]["content"]
    text, off = _render(tokenizer, msgs[:mi], content)
    return TextJob(key=f"contrast:{contrast['id']}", text=text, spans=(Span("final", off, off + len(content)),))


def code_job(tokenizer: Any, key: str, prompt: str, source: str) -> TextJob:
    """A program as the assistant's answer to the agent's coding prompt; spans ``code`` (the whole
    source) and ``body`` (after the signature and docstring: where mutants differ)."""
    user = f"{CODE_INSTRUCTION}\n\n```python\n{prompt.rstrip()}\n```"
    content = f"```python\n{source}```"
    text, off = _render(tokenizer, [{"role": "user", "content": user}], content)
    start = off + len("```python\n")
    body = start + (len(prompt) if source.startswith(prompt) else 0)
    return TextJob(key=key, text=text,
                   spans=(Span("code", start, start + len(source)), Span("body", body, start + len(source))))


def code_pair_jobs(tokenizer: Any, pair: Mapping[str, Any]) -> tuple[TextJob, TextJob]:
    """(correct, mutant) jobs of a code pair."""
    return (code_job(tokenizer, f"code:{pair['id']}:correct", pair["prompt"], pair["correct"]),
            code_job(tokenizer, f"code:{pair['id']}:mutant", pair["prompt"], pair["mutant"]))


def confidence_job(tokenizer: Any, item: Mapping[str, Any]) -> TextJob:
    """Spans ``completion`` and ``claim`` (the claim is identical within a pair)."""
    content = item["completion"]
    text, off = _render(tokenizer, [{"role": "user", "content": item["prompt"]}], content)
    c0, c1 = item["claim_span"]
    return TextJob(key=f"confidence:{item['id']}", text=text,
                   spans=(Span("completion", off, off + len(content)), Span("claim", off + c0, off + c1)))


def backtracking_job(tokenizer: Any, trace: Mapping[str, Any]) -> TextJob:
    """Spans ``prefix`` (before step k), ``step`` (step k's sentence: the window right before the
    backtrack) and ``window`` (from step k to the pivot)."""
    content = trace["completion"]
    text, off = _render(tokenizer, [{"role": "user", "content": trace["prompt"]}], content)
    s0, s1 = trace["step_span"]
    pivot = int(trace["pivot"])
    return TextJob(key=f"backtracking:{trace['id']}", text=text, spans=(
        Span("prefix", off, off + s0), Span("step", off + s0, off + s1), Span("window", off + s0, off + pivot)))
