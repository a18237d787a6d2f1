"""Hidden states of character spans, gathered in one teacher-forced pass per text.

A :class:`TextJob` is a full text (chat template already applied) with named character spans. One
batched forward pass with ``output_hidden_states=True`` gives every layer (valueagent convention:
layer ``L`` = ``hidden_states[L]``); for each span we keep

- ``mean``:  the mean raw hidden state per layer, ``(n_layers, H)`` — what difference-of-means
  estimators and probes need;
- ``mean_unit``: the mean of ``h / |h|`` per layer, ``(n_layers, H)`` — the mean cosine of the span
  with any direction ``d`` is then exactly ``mean_unit @ unit(d)``;
- ``norm``: the mean residual norm per layer, ``(n_layers,)``;
- optionally ``tokens``: every token's raw hidden states, ``(T, n_layers, H)`` float16, with the
  token's index in the text, its position inside the span (0..1) and its log-probability.

Position 0 of a text is never part of any span (its norm is ~100x the others at middle layers).
Results are cached on disk per text, so a killed run restarts where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from valueagent.axis.progress import Counter

_FORMAT = 2  # bump when the cached arrays change


@dataclass(frozen=True)
class Span:
    """Characters ``[start, end)`` of a text; ``keep_tokens`` keeps per-token states (more memory)."""

    name: str
    start: int
    end: int
    keep_tokens: bool = False


@dataclass(frozen=True)
class TextJob:
    """A text to run once through the model and the spans to read from it."""

    key: str
    text: str
    spans: tuple[Span, ...]


@dataclass
class SpanActs:
    """What one span of one text looked like to the model (see the module docstring)."""

    n_tokens: int
    mean: np.ndarray  # (n_layers, H) float32
    mean_unit: np.ndarray  # (n_layers, H) float32
    norm: np.ndarray  # (n_layers,) float32
    mean_logprob: float
    first_token: int = 0  # index in the text of the span's first token
    last_token: int = 0
    tokens: np.ndarray | None = None  # (T, n_layers, H) float16
    token_index: np.ndarray | None = None  # (T,) int, index in the text
    rel_pos: np.ndarray | None = None  # (T,) float, 0..1 inside the span
    logprobs: np.ndarray | None = None  # (T,) float32


@dataclass
class TextActs:
    """The spans of one text; a span with no tokens is absent."""

    key: str
    layers: tuple[int, ...]
    spans: dict[str, SpanActs] = field(default_factory=dict)


def token_spans(offsets: Sequence[tuple[int, int]], text: str, start: int, end: int) -> list[int]:
    """Indices of tokens whose visible characters lie inside ``[start, end)``.

    A token's leading/trailing whitespace is ignored (byte-level BPE glues a space to the next word),
    so the token ``" violin"`` belongs to a span that starts at ``v``. Position 0 is never returned.
    """
    out = []
    for i, (a, b) in enumerate(offsets):
        if i == 0 or b <= a:
            continue
        piece = text[a:b]
        core_a = a + (len(piece) - len(piece.lstrip()))
        core_b = b - (len(piece) - len(piece.rstrip()))
        if core_b <= core_a:  # whitespace-only token: use its full range
            core_a, core_b = a, b
        if start <= core_a and core_b <= end:
            out.append(i)
    return out


def cache_key(job: TextJob, model_tag: str, layers: Sequence[int]) -> str:
    """Hash of everything that determines a job's result."""
    spec = {"v": _FORMAT, "m": model_tag, "t": job.text, "s": [vars(s) for s in job.spans], "l": list(layers)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def _save(path: Path, acts: TextActs) -> None:
    arrays: dict[str, np.ndarray] = {"layers": np.asarray(acts.layers)}
    for name, s in acts.spans.items():
        for attr in ("mean", "mean_unit", "norm", "tokens", "token_index", "rel_pos", "logprobs"):
            val = getattr(s, attr)
            if val is not None:
                arrays[f"{name}/{attr}"] = val
        arrays[f"{name}/scalars"] = np.asarray(
            [s.n_tokens, s.mean_logprob, s.first_token, s.last_token], dtype=np.float64
        )
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


def _load(path: Path, key: str) -> TextActs:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    acts = TextActs(key=key, layers=tuple(int(x) for x in arrays["layers"]))
    for name in {k.split("/")[0] for k in arrays if "/" in k}:
        n, mlp, first, last = arrays[f"{name}/scalars"]
        got = {a: arrays.get(f"{name}/{a}") for a in ("mean", "mean_unit", "norm", "tokens", "token_index",
                                                        "rel_pos", "logprobs")}
        acts.spans[name] = SpanActs(n_tokens=int(n), mean_logprob=float(mlp), first_token=int(first),
                                    last_token=int(last), **got)  # type: ignore[arg-type]
    return acts


def _forward(model: Any, tokenizer: Any, texts: list[str], device: Any) -> tuple[list[Any], torch.Tensor]:
    """Left-padded pass. Returns per text (offsets, ids, pad width) and hidden states (L+1, B, T, H)."""
    encs = [tokenizer(t, add_special_tokens=False, return_offsets_mapping=True) for t in texts]
    rows = [list(e["input_ids"]) for e in encs]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    # Full-vocabulary logits for every position would cost B*T*151k floats: keep one, and compute
    # the log-probabilities of span tokens from the final hidden state below.
    out = model(
        input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
        output_hidden_states=True, use_cache=False, logits_to_keep=1,
    )
    hs = torch.stack(out.hidden_states)  # (L+1, B, T, H); the last entry has the final norm applied
    return [(e["offset_mapping"], r, width - len(r)) for e, r in zip(encs, rows, strict=True)], hs


def _token_logprobs(model: Any, final: torch.Tensor, ids: list[int], idx: list[int]) -> torch.Tensor:
    """log p(token i | tokens < i) for i in ``idx``; ``final``: (T, H) last hidden states of the text."""
    head = model.get_output_embeddings()
    prev = torch.as_tensor([i - 1 for i in idx], device=final.device)
    logits = head(final[prev]).float()  # (n, V)
    target = torch.as_tensor([ids[i] for i in idx], device=logits.device)
    logp: torch.Tensor = (logits.gather(1, target[:, None])[:, 0] - logits.logsumexp(-1)).cpu()
    return logp


def _span_acts(h: torch.Tensor, idx: list[int], lp: torch.Tensor, keep: bool) -> SpanActs:
    """``h``: (L_sel, T_text, H) float32 for one text (unpadded); ``idx``: the span's token indices;
    ``lp``: their log-probabilities."""
    sel = h[:, idx, :]  # (L_sel, T, H)
    norms = sel.norm(dim=-1)  # (L_sel, T)
    unit = sel / norms.clamp_min(1e-6)[..., None]
    lps = lp.numpy().astype(np.float32)
    first = idx[0]
    span_len = max(idx[-1] - first, 1)
    return SpanActs(
        n_tokens=len(idx),
        mean=sel.mean(1).numpy(),
        mean_unit=unit.mean(1).numpy(),
        norm=norms.mean(1).numpy(),
        mean_logprob=float(lps.mean()),
        first_token=int(idx[0]),
        last_token=int(idx[-1]),
        tokens=sel.permute(1, 0, 2).numpy().astype(np.float16) if keep else None,
        token_index=np.asarray(idx) if keep else None,
        rel_pos=np.asarray([(i - first) / span_len for i in idx], dtype=np.float32) if keep else None,
        logprobs=lps if keep else None,
    )


@torch.inference_mode()
def gather(
    model: Any,
    tokenizer: Any,
    jobs: Sequence[TextJob],
    *,
    layers: Sequence[int] | None = None,
    batch_size: int = 4,
    cache_dir: str | Path | None = None,
    model_tag: str = "",
    progress: str | None = "activations",
    max_tokens: int = 4096,
) -> list[TextActs]:
    """Run every job once (batched, similar lengths together) and return their span activations.

    ``layers`` defaults to all of ``0..num_layers``. With ``cache_dir``, each text's result is stored
    under a hash of (``model_tag``, text, spans, layers) and reused. ``progress`` names a progress line
    on stderr (None for silence).
    """
    device = next(model.parameters()).device
    n_layers = int(model.config.num_hidden_layers)
    sel_layers = tuple(range(n_layers + 1)) if layers is None else tuple(int(x) for x in layers)
    cdir = Path(cache_dir) if cache_dir is not None else None
    if cdir is not None:
        cdir.mkdir(parents=True, exist_ok=True)
    results: dict[int, TextActs] = {}
    todo: list[int] = []
    for i, job in enumerate(jobs):
        path = cdir / f"{cache_key(job, model_tag, sel_layers)}.npz" if cdir is not None else None
        if path is not None and path.exists():
            try:
                results[i] = _load(path, job.key)
                continue
            except (OSError, ValueError, KeyError):
                path.unlink(missing_ok=True)
        todo.append(i)
    # Similar lengths share a batch (less padding); order is restored at the end.
    todo.sort(key=lambda i: len(jobs[i].text))
    done = 0
    counter = Counter(progress, len(todo)) if progress and todo else None
    for b in range(0, len(todo), batch_size):
        chunk = todo[b : b + batch_size]
        for i in chunk:
            n_tok = len(tokenizer(jobs[i].text, add_special_tokens=False)["input_ids"])
            if n_tok > max_tokens:
                raise ValueError(f"text {jobs[i].key!r} has {n_tok} tokens, more than max_tokens={max_tokens}")
        metas, hs = _forward(model, tokenizer, [jobs[i].text for i in chunk], device)
        for j, i in enumerate(chunk):
            job = jobs[i]
            offsets, ids, off = metas[j]
            h = hs[list(sel_layers), j, off:, :].float().cpu()  # (L_sel, T, H)
            acts = TextActs(key=job.key, layers=sel_layers)
            for span in job.spans:
                idx = token_spans(offsets, job.text, span.start, span.end)
                if idx:
                    lp = _token_logprobs(model, hs[-1, j, off:, :], ids, idx)
                    acts.spans[span.name] = _span_acts(h, idx, lp, span.keep_tokens)
            results[i] = acts
            if cdir is not None:
                _save(cdir / f"{cache_key(job, model_tag, sel_layers)}.npz", acts)
        done += len(chunk)
        if counter is not None:
            counter.update(done, f" texts run ({len(jobs) - len(todo)} cached)")
    if counter is not None:
        counter.close()
    return [results[i] for i in range(len(jobs))]
