"""Continuous batching for the backend's worker: rows join after their own prefill, leave when done.

A row's KV cache is merged into the running batch by left-padding (masked), so a request that
arrives mid-flight starts decoding at the next step instead of waiting for the batch to drain,
and a finished request returns at once. Every generated token's value is read by the axis hook
in the forward pass that feeds that token (its own position), so no second pass is needed.

A :class:`PrefixStore` keeps the keys and values of finished unsteered rows. A later prompt that shares
a prefix with one of them (the agent's next segment: the same prompt plus the text written so far; a
backtrack: the prompt plus the kept segments) prefills only the tokens after the shared prefix. Keys
and values at a position depend only on the tokens up to it, so the reuse is exact up to float
summation order.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache

from valueagent.runtime.generation import ABORT_WINDOW, FinishReason, Generation, GenerationRequest
from valueagent.runtime.hooks import AxisHook, attached
from valueagent.signals import STOP_TRACES, window_low


@dataclass
class Row:
    """One request being decoded."""

    request: GenerationRequest
    future: cf.Future[Any]
    prompt_len: int
    alpha: float  # steering in residual units (fraction x residual norm)
    gen: torch.Generator
    toks: list[int] = field(default_factory=list)
    lps: list[float] = field(default_factory=list)
    vals: list[float] = field(default_factory=list)
    ents: list[float] = field(default_factory=list)
    tops: list[list[float]] = field(default_factory=list)
    hsum: torch.Tensor | None = None  # (H,) sum of the axis-layer residual over generated tokens
    finish: FinishReason | None = None
    prompt_ids: tuple[int, ...] = ()
    cached: int = 0  # prompt tokens whose keys and values came from the prefix store
    on_token: Callable[[Row], None] | None = None  # called once per recorded token, its value read (streaming)


TOP_K = 5
"""Top log-probabilities kept per generated token (DeepConf's token confidence is minus their mean)."""

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each (1, kv_heads, T, head_dim)


def _window_low(row: Row, trace: str, threshold: float) -> bool:
    """Whether the mean of the row's last ``ABORT_WINDOW`` readings of ``trace`` is <= ``threshold`` (the
    traces and the rule of ``valueagent.signals``, as a replay reads them)."""
    w = ABORT_WINDOW
    recent = {"values": row.vals[-w:], "top_logprobs": row.tops[-w:]}
    return window_low(STOP_TRACES[trace](recent), threshold, w)


K = TypeVar("K")
PREFIX_MIN_TOKENS = 16
"""The shortest shared prefix worth reusing (shorter ones cost more to look up and copy than to recompute)."""


class PrefixStore:
    """Keys and values of finished unsteered rows, least recently used evicted beyond ``max_bytes``.

    ``lookup(ids)`` finds the longest common prefix of ``ids`` with a stored row (at least
    ``min_tokens`` long, and leaving at least one token of ``ids`` to run, whose logits start decoding).
    """

    def __init__(self, max_bytes: int, *, min_tokens: int = PREFIX_MIN_TOKENS) -> None:
        self.max_bytes, self.min_tokens = max_bytes, min_tokens
        self._rows: OrderedDict[tuple[int, ...], KV] = OrderedDict()
        self._bytes = 0
        self.lookups = self.hits = self.reused_tokens = 0

    @staticmethod
    def _size(kv: KV) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)

    def put(self, ids: Sequence[int], kv: KV) -> None:
        key = tuple(ids)
        size = self._size(kv)
        if size > self.max_bytes or len(key) < self.min_tokens:
            return
        if key in self._rows:
            self._bytes -= self._size(self._rows.pop(key))
        self._rows[key] = kv
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, old = self._rows.popitem(last=False)
            self._bytes -= self._size(old)

    def lookup(self, ids: Sequence[int]) -> tuple[int, KV | None]:
        """``(n, kv)``: the first ``n`` positions of ``kv`` hold ``ids[:n]``; ``(0, None)`` if none fits."""
        self.lookups += 1
        best_n, best_key = longest_prefix(((key, key) for key in self._rows), ids, self.min_tokens)
        if best_key is None:
            return 0, None
        self._rows.move_to_end(best_key)
        self.hits += 1
        self.reused_tokens += best_n
        return best_n, [(k[:, :, :best_n], v[:, :, :best_n]) for k, v in self._rows[best_key]]


def longest_prefix(
    rows: Iterable[tuple[K, Sequence[int]]], ids: Sequence[int], min_tokens: int
) -> tuple[int, K | None]:
    """The kept row (``(key, its token ids)``) sharing the longest prefix with ``ids``, and that length: at least
    ``min_tokens``, and at most ``len(ids) - 1`` (one token must run, its logits start the decode); ``(0, None)``
    if none. The rule of both engines' prefix reuse (``PrefixStore``, the llama.cpp backend's kept rows)."""
    best_n, best_key = 0, None
    want = np.asarray(ids, dtype=np.int64)
    for key, row in rows:
        m = min(len(row), len(ids) - 1)
        if m <= best_n:
            continue
        diff = np.flatnonzero(np.asarray(row[:m], dtype=np.int64) != want[:m])
        n = int(diff[0]) if len(diff) else m
        if n > best_n:
            best_n, best_key = n, key
    return (best_n, best_key) if best_key is not None and best_n >= min_tokens else (0, None)


def _nucleus(probs: torch.Tensor, top_p: float, head: int = 1024) -> torch.Tensor:
    """``probs`` cut to the smallest most-likely set reaching ``top_p``, renormalised. The set almost always
    lies in the ``head`` largest entries; sorting only those is far cheaper than sorting the vocabulary."""
    sp, si = probs.topk(min(head, probs.numel()))
    if float(sp.sum()) < top_p:  # a flat distribution: sort it all
        sp, si = probs.sort(descending=True)
    keep = sp.cumsum(0) - sp < top_p
    out = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
    return out / out.sum()


def cache_of(out: Any) -> Any:
    """The KV cache in a model output (``cache`` in newer transformers, else ``past_key_values``)."""
    if "cache" in out:
        return out["cache"]
    return out["past_key_values"] if "past_key_values" in out else None


def left_pad(rows: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows left-padded to one width: ``(ids, mask)``, both ``(B, T)``."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def _pad_cache_left(cache: Any, width: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    layers = []
    for layer in cache.layers:
        k, v = layer.keys, layer.values  # (B, kv_heads, T, head_dim)
        extra = width - k.shape[2]
        layers.append((F.pad(k, (0, 0, extra, 0)), F.pad(v, (0, 0, extra, 0))))
    return layers


class RowBatch:
    """The rows decoding together, whatever runs them: each step records every row's pending token, feeds the
    tokens to the model (``_feed``: the subclass's), reads their values, ends rows (eos, stop strings, length,
    an in-decode abort) and samples the next tokens with :func:`sample_next`, so that a seed means the same
    thing on every backend. ``reading``: whether values are read (an axis is loaded and reading is on)."""

    def __init__(self, *, decode: Callable[[list[int]], str], layer: int | None, reading: bool,
                 eos: set[int]) -> None:
        self._decode, self.layer, self.reading, self.eos = decode, layer, reading, eos
        self.rows: list[Row] = []
        self.pending = torch.zeros((0,), dtype=torch.long)  # (B,) sampled, not yet recorded
        self.pending_lp = torch.zeros((0, 2 + TOP_K))  # (B, 2 + k): log-prob, entropy, top-k log-probs

    # -- the subclass's ------------------------------------------------------------------------------
    def admit(self, rows: list[Row], prompts: list[list[int]], store: PrefixStore | None = None) -> None:
        """Prefill ``rows`` (their ``prompts``) and add them to the batch with their first tokens sampled."""
        raise NotImplementedError

    def _feed(self) -> tuple[torch.Tensor, list[float] | None, torch.Tensor | None]:
        """Run the pending token of every row: ``(logits (B, V), values (B,) or None, residuals (B, H) or
        None)``, values and residuals at the axis layer, before steering."""
        raise NotImplementedError

    def _drop(self, keep: list[int], store: PrefixStore | None) -> None:
        """Release the model state of every row not in ``keep`` (indices of rows that go on)."""
        raise NotImplementedError

    def abandon(self) -> None:
        """A step failed and every row has failed with it: release whatever model state the rows still hold
        (the worker starts a new batch)."""

    # -- shared --------------------------------------------------------------------------------------
    def _start(self, rows: list[Row], logits: torch.Tensor) -> None:
        """Sample the first tokens of freshly prefilled ``rows`` (``logits``: (B, V) at their last prompt
        position) and add them to the batch."""
        nxt, lp = sample_next(rows, logits)
        self.rows.extend(rows)
        self.pending = torch.cat([self.pending, nxt])
        self.pending_lp = torch.cat([self.pending_lp, lp])

    def step(self, store: PrefixStore | None = None) -> list[tuple[Row, Generation]]:
        """Record the pending tokens, feed them (reading their values), sample the next; return the
        rows that finished with their results (they have left the batch)."""
        for i, row in enumerate(self.rows):
            if row.finish is not None:  # cancelled by its caller since the last step: leaves, nothing recorded
                continue
            t = int(self.pending[i])
            if t in self.eos and not row.request.ignore_eos:
                row.finish = "eos"
            else:
                stats = self.pending_lp[i].tolist()
                row.toks.append(t)
                row.lps.append(stats[0])
                row.ents.append(stats[1])
                row.tops.append(stats[2:])
        done = self._remove_finished(store)
        if not self.rows:
            return done
        logits, values, hidden = self._feed()
        if self.reading and values is not None:
            for row, v in zip(self.rows, values, strict=True):
                row.vals.append(float(v))
            if hidden is not None and any(r.request.hidden_mean for r in self.rows):
                for i, row in enumerate(self.rows):
                    if row.request.hidden_mean:
                        h = hidden[i].detach().float().cpu()
                        row.hsum = h.clone() if row.hsum is None else row.hsum + h
        for row in self.rows:
            if row.on_token is not None:
                row.on_token(row)
            r = row.request
            if r.stop and any(s in self._decode(row.toks) for s in r.stop):
                row.finish = "stop"
            elif len(row.toks) >= r.max_new_tokens:
                row.finish = "length"
            elif r.abort_below is not None and _window_low(row, *r.abort_below):
                row.finish = "abort"
        self.pending, self.pending_lp = sample_next(self.rows, logits)
        return done + self._remove_finished(store)

    def _remove_finished(self, store: PrefixStore | None = None) -> list[tuple[Row, Generation]]:
        keep = [i for i, r in enumerate(self.rows) if r.finish is None]
        if len(keep) == len(self.rows):
            return []
        self._drop(keep, store)
        done = [(r, self._result(r)) for r in self.rows if r.finish is not None]
        self.rows = [self.rows[i] for i in keep]
        idx = torch.tensor(keep, dtype=torch.long)
        self.pending, self.pending_lp = self.pending[idx], self.pending_lp[idx]
        return done

    def _result(self, row: Row) -> Generation:
        assert row.finish is not None
        return Generation(
            text=self._decode(row.toks),
            token_ids=row.toks,
            logprobs=row.lps,
            values=row.vals if self.reading else [],
            layer=self.layer,
            prompt_tokens=row.prompt_len,
            finish_reason=row.finish,
            steer=row.request.steer,
            tokens=[self._decode([t]) for t in row.toks],
            cached_prompt_tokens=row.cached,
            entropies=row.ents,
            top_logprobs=row.tops,
            hidden_mean=(row.hsum / max(len(row.vals), 1)).tolist() if row.hsum is not None else None,
        )


class DecodeBatch(RowBatch):
    """The transformers batch: the rows' KV cache, attention mask and last positions, left-padded together."""

    def __init__(
        self,
        *,
        model: Any,
        forward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Any], Any],
        decode: Callable[[list[int]], str],
        hook: AxisHook | None,
        layer: int | None,
        eos: set[int],
        pad: int,
        device: torch.device,
    ) -> None:
        super().__init__(decode=decode, layer=layer if hook is not None else None,
                         reading=hook is not None and hook.read, eos=eos)
        self.model, self._forward = model, forward
        self.hook, self.pad, self.device = hook, pad, device
        self.cache: Any = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=device)  # (B, T)
        self.pos = torch.zeros((0, 1), dtype=torch.long, device=device)  # (B, 1) last position

    def _run(self, rows: list[Row], ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any) -> Any:
        if self.hook is None or self.layer is None:
            return self._forward(ids, mask, pos, cache)
        prompt_pass = ids.shape[1] > 1
        self.hook.set_steering(
            torch.tensor([r.alpha for r in rows]),
            torch.tensor([prompt_pass and not r.request.steer_generated_only for r in rows]),
        )
        with attached(self.model, self.layer, self.hook):
            return self._forward(ids, mask, pos, cache)

    def admit(self, rows: list[Row], prompts: list[list[int]], store: PrefixStore | None = None) -> None:
        """Prefill ``rows`` and merge them into the batch. Unsteered rows whose prompt shares a prefix with
        a row in ``store`` run only the rest of their prompt, one by one; the others run together."""
        fresh: list[tuple[Row, list[int]]] = []
        for row, ids in zip(rows, prompts, strict=True):
            n, kv = store.lookup(ids) if store is not None and row.alpha == 0 else (0, None)
            if kv is None:
                fresh.append((row, ids))
                continue
            cache = DynamicCache(ddp_cache_data=[(k.clone(), v.clone()) for k, v in kv], config=self.model.config)
            mask = torch.ones((1, len(ids)), dtype=torch.long, device=self.device)
            pos = torch.arange(n, len(ids), device=self.device)[None]
            out = self._run([row], torch.tensor([ids[n:]], device=self.device), mask, pos, cache)
            row.cached = n
            self._merge([row], out.logits[:, -1, :], cache_of(out), mask, pos[:, -1:])
        if fresh:
            # Rows with the same prompt and steering (a task's N samples) share one prefill: their keys and
            # values are identical, so the prompt runs once and its cache is repeated per row.
            groups: dict[tuple[Any, ...], int] = {}
            inv = [groups.setdefault((tuple(p), r.alpha, r.request.steer_generated_only), len(groups))
                   for r, p in fresh]
            heads = {g: fresh[inv.index(g)] for g in range(len(groups))}
            padded, mask = left_pad([heads[g][1] for g in range(len(groups))], self.pad, self.device)
            pos = (mask.cumsum(-1) - 1).clamp_min(0)
            out = self._run([heads[g][0] for g in range(len(groups))], padded, mask, pos, None)
            logits, cache = out.logits[:, -1, :], cache_of(out)
            if len(groups) < len(fresh):
                idx = torch.tensor(inv, device=self.device)
                cache.batch_select_indices(idx)
                logits, mask, pos = logits[idx], mask[idx], pos[idx]
            self._merge([r for r, _ in fresh], logits, cache, mask, pos[:, -1:])

    def _merge(self, rows: list[Row], logits: torch.Tensor, cache: Any, mask: torch.Tensor,
               last: torch.Tensor) -> None:
        """Join freshly prefilled ``rows`` (their cache, mask and last positions) to the batch's and sample their
        first tokens from ``logits`` (B, V)."""
        if not self.rows:
            self.cache, self.mask, self.pos = cache, mask, last
        else:
            t = max(self.mask.shape[1], mask.shape[1])
            a, b = _pad_cache_left(self.cache, t), _pad_cache_left(cache, t)
            merged = [(torch.cat([ka, kb]), torch.cat([va, vb])) for (ka, va), (kb, vb) in zip(a, b, strict=True)]
            self.cache = DynamicCache(ddp_cache_data=merged, config=self.model.config)
            self.mask = torch.cat([F.pad(self.mask, (t - self.mask.shape[1], 0)),
                                   F.pad(mask, (t - mask.shape[1], 0))])
            self.pos = torch.cat([self.pos, last])
        self._start(rows, logits)

    def row_kv(self, i: int, length: int) -> KV:
        """A copy of the last ``length`` cached positions of row ``i`` (its tokens: rows are right-aligned)."""
        return [(layer.keys[i : i + 1, :, -length:].clone(), layer.values[i : i + 1, :, -length:].clone())
                for layer in self.cache.layers]

    def _feed(self) -> tuple[torch.Tensor, list[float] | None, torch.Tensor | None]:
        b = len(self.rows)
        self.mask = torch.cat([self.mask, torch.ones((b, 1), dtype=self.mask.dtype, device=self.device)], dim=1)
        self.pos = self.pos + 1
        out = self._run(self.rows, self.pending[:, None].to(self.device), self.mask, self.pos, self.cache)
        self.cache = cache_of(out)
        hook = self.hook
        if hook is None or not hook.read or hook.last is None:
            return out.logits[:, -1, :], None, None
        return out.logits[:, -1, :], hook.last[:, -1].tolist(), hook.last_hidden

    def _drop(self, keep: list[int], store: PrefixStore | None) -> None:
        if store is not None:  # every recorded token has been fed: the cache holds prompt + toks
            for i, r in enumerate(self.rows):
                if r.finish is not None and r.alpha == 0 and r.prompt_ids:
                    ids = (*r.prompt_ids, *r.toks)
                    store.put(ids, self.row_kv(i, len(ids)))
        if not keep:
            self.cache, self.mask, self.pos = None, self.mask[:0], self.pos[:0]
            return
        idx = torch.tensor(keep, device=self.device)
        self.cache.batch_select_indices(idx)
        self.mask, self.pos = self.mask[idx], self.pos[idx]
        # Drop left columns that are padding for every remaining row (they only cost compute).
        lead = int((self.mask.cumsum(-1) == 0).sum(-1).min())
        if lead > 0:
            cropped = [(k[:, :, lead:], v[:, :, lead:]) for k, v in _pad_cache_left(self.cache, self.mask.shape[1])]
            self.cache = DynamicCache(ddp_cache_data=cropped, config=self.model.config)
            self.mask = self.mask[:, lead:]


def sample_next(rows: list[Row], logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token per row (greedy or seeded nucleus sampling) and its statistics ``(B, 2 + TOP_K)``:
    the model's log-probability of it, the entropy of the distribution and its top-k log-probabilities
    (all at temperature 1). A row's first token never is one of its request's ``exclude_first``."""
    cpu = logits.detach().float().to("cpu")  # (B, V)
    logp = torch.log_softmax(cpu, dim=-1)
    out = torch.empty(cpu.shape[0], dtype=torch.long)
    for i, row in enumerate(rows):
        r = row.request
        scores = cpu[i]
        if r.exclude_first and not row.toks:
            scores = scores.clone()
            scores[list(r.exclude_first)] = float("-inf")
        if r.temperature == 0:
            out[i] = int(scores.argmax())
            continue
        probs = torch.softmax(scores / r.temperature, dim=-1)
        if r.top_p < 1.0:
            probs = _nucleus(probs, r.top_p)
        out[i] = int(torch.multinomial(probs, 1, generator=row.gen))
    entropy = -(logp.exp() * logp).nan_to_num().sum(-1)  # (B,)
    stats = torch.cat([logp.gather(1, out[:, None]), entropy[:, None], logp.topk(TOP_K, dim=-1).values], 1)
    return out, stats
