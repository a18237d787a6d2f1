"""Continuous batching for the backend's worker: rows join after their own prefill, leave when done.

A row's KV cache is merged into the running batch by left-padding (masked), so a request that
arrives mid-flight starts decoding at the next step instead of waiting for the batch to drain,
and a finished request returns at once. Every generated token's value is read by the axis hook
in the forward pass that feeds that token (its own position), so no second pass is needed.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache

from valueagent.generation import FinishReason, Generation, GenerationRequest
from valueagent.hooks import AxisHook, attached


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
    finish: FinishReason | None = None


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


class DecodeBatch:
    """The rows decoding together, their KV cache, attention mask and last positions."""

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
        self.model, self._forward, self._decode = model, forward, decode
        self.hook, self.layer, self.eos, self.pad, self.device = hook, layer, eos, pad, device
        self.rows: list[Row] = []
        self.cache: Any = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=device)  # (B, T)
        self.pos = torch.zeros((0, 1), dtype=torch.long, device=device)  # (B, 1) last position
        self.pending = torch.zeros((0,), dtype=torch.long)  # (B,) sampled, not yet recorded
        self.pending_lp = torch.zeros((0,))  # (B,)

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

    def admit(self, rows: list[Row], prompts: list[list[int]]) -> None:
        """Prefill ``rows`` together, sample their first tokens and merge them into the batch."""
        ids, mask = left_pad(prompts, self.pad, self.device)
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        out = self._run(rows, ids, mask, pos, None)
        nxt, lp = self._sample(rows, out.logits[:, -1, :])
        cache, last = cache_of(out), pos[:, -1:]
        if not self.rows:
            self.rows, self.cache, self.mask, self.pos = list(rows), cache, mask, last
            self.pending, self.pending_lp = nxt, lp
            return
        t = max(self.mask.shape[1], mask.shape[1])
        a, b = _pad_cache_left(self.cache, t), _pad_cache_left(cache, t)
        merged = [(torch.cat([ka, kb]), torch.cat([va, vb])) for (ka, va), (kb, vb) in zip(a, b, strict=True)]
        self.cache = DynamicCache(ddp_cache_data=merged, config=self.model.config)
        self.mask = torch.cat([F.pad(self.mask, (t - self.mask.shape[1], 0)), F.pad(mask, (t - mask.shape[1], 0))])
        self.pos = torch.cat([self.pos, last])
        self.pending = torch.cat([self.pending, nxt])
        self.pending_lp = torch.cat([self.pending_lp, lp])
        self.rows.extend(rows)

    def step(self) -> list[tuple[Row, Generation]]:
        """Record the pending tokens, feed them (reading their values), sample the next; return the
        rows that finished with their results (they have left the batch)."""
        for i, row in enumerate(self.rows):
            t = int(self.pending[i])
            if t in self.eos and not row.request.ignore_eos:
                row.finish = "eos"
            else:
                row.toks.append(t)
                row.lps.append(float(self.pending_lp[i]))
        done = self._remove_finished()
        if not self.rows:
            return done
        b = len(self.rows)
        self.mask = torch.cat([self.mask, torch.ones((b, 1), dtype=self.mask.dtype, device=self.device)], dim=1)
        self.pos = self.pos + 1
        out = self._run(self.rows, self.pending[:, None].to(self.device), self.mask, self.pos, self.cache)
        self.cache = cache_of(out)
        if self.hook is not None and self.hook.read and self.hook.last is not None:
            for row, v in zip(self.rows, self.hook.last[:, -1].tolist(), strict=True):
                row.vals.append(float(v))
        for row in self.rows:
            r = row.request
            if r.stop and any(s in self._decode(row.toks) for s in r.stop):
                row.finish = "stop"
            elif len(row.toks) >= r.max_new_tokens:
                row.finish = "length"
        self.pending, self.pending_lp = self._sample(self.rows, out.logits[:, -1, :])
        return done + self._remove_finished()

    def _remove_finished(self) -> list[tuple[Row, Generation]]:
        keep = [i for i, r in enumerate(self.rows) if r.finish is None]
        if len(keep) == len(self.rows):
            return []
        done = [(r, self._result(r)) for r in self.rows if r.finish is not None]
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache, self.mask = None, self.mask[:0]
            self.pos, self.pending, self.pending_lp = self.pos[:0], self.pending[:0], self.pending_lp[:0]
            return done
        idx = torch.tensor(keep, device=self.device)
        self.cache.batch_select_indices(idx)
        self.mask, self.pos = self.mask[idx], self.pos[idx]
        self.pending, self.pending_lp = self.pending[idx.cpu()], self.pending_lp[idx.cpu()]
        # Drop left columns that are padding for every remaining row (they only cost compute).
        lead = int((self.mask.cumsum(-1) == 0).sum(-1).min())
        if lead > 0:
            cropped = [(k[:, :, lead:], v[:, :, lead:]) for k, v in _pad_cache_left(self.cache, self.mask.shape[1])]
            self.cache = DynamicCache(ddp_cache_data=cropped, config=self.model.config)
            self.mask = self.mask[:, lead:]
        return done

    def _result(self, row: Row) -> Generation:
        assert row.finish is not None
        return Generation(
            text=self._decode(row.toks),
            token_ids=row.toks,
            logprobs=row.lps,
            values=row.vals if self.hook is not None and self.hook.read else [],
            layer=self.layer if self.hook is not None else None,
            prompt_tokens=row.prompt_len,
            finish_reason=row.finish,
            steer=row.request.steer,
            tokens=[self._decode([t]) for t in row.toks],
        )

    @staticmethod
    def _sample(rows: list[Row], logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Next token per row (greedy or seeded nucleus sampling) and its model log-probability."""
        cpu = logits.detach().float().to("cpu")  # (B, V)
        logp = torch.log_softmax(cpu, dim=-1)
        out = torch.empty(cpu.shape[0], dtype=torch.long)
        for i, row in enumerate(rows):
            r = row.request
            if r.temperature == 0:
                out[i] = int(cpu[i].argmax())
                continue
            probs = torch.softmax(cpu[i] / r.temperature, dim=-1)
            if r.top_p < 1.0:
                sp, si = probs.sort(descending=True)
                keep = sp.cumsum(0) - sp < r.top_p
                probs = torch.zeros_like(probs).scatter(0, si[keep], sp[keep])
                probs = probs / probs.sum()
            out[i] = int(torch.multinomial(probs, 1, generator=row.gen))
        return out, logp.gather(1, out[:, None])[:, 0]
