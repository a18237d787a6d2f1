"""The transformers backend: one worker thread owns the model and batches requests in flight.

Every generated token gets its value from the same forward pass that processes it: a hook at the
axis layer reads ``cos(h, d)`` while the KV-cached decode runs (no second pass). Steering is per
batch row, so requests with different steering strengths share forward passes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import inspect
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from valueagent.runtime.artifact import ValueAxis
from valueagent.runtime.cpu_kernels import release_openmp_pool
from valueagent.runtime.decoding import DecodeBatch, PrefixStore, Row, left_pad
from valueagent.runtime.generation import (
    Generation,
    GenerationRequest,
    Message,
    ModelInfo,
    Scored,
    TokenCallback,
    TokenEvent,
    ValueBackend,
)
from valueagent.runtime.hooks import AxisHook, attached
from valueagent.runtime.layers import num_layers

log = logging.getLogger(__name__)

# Texts for measuring the mean residual norm when an axis carries no norm statistics.
_NORM_TEXTS = (
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog while the band plays a slow song.",
    "Let me check the result again: the sum of the first ten numbers is 55, so the answer is right.",
    "import os\n\nfor name in sorted(os.listdir('.')):\n    print(name.upper())\n",
)


def steer_alpha(fraction: float, residual_norm: float) -> float:
    """Steering strength in residual units from a fraction of the mean residual norm (0.168 = 16.8%)."""
    return float(fraction) * float(residual_norm)


@dataclass
class _Job:
    kind: str  # "generate" | "score" | "norm"
    future: cf.Future[Any]
    request: GenerationRequest | None = None
    messages: tuple[Message, ...] | None = None
    completion: str | None = None
    on_token: TokenCallback | None = None


class HFBackend:
    """A :class:`~valueagent.runtime.generation.ValueBackend` over a transformers causal LM.

    ``axis`` may be None: generation then works and ``values`` stay empty; steering needs an axis.
    ``prefix_cache_mb`` bounds the keys and values kept for prefix reuse (0 turns reuse off): a prompt
    that extends an earlier unsteered request's prompt and output prefills only its new tokens.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        revision: str | None = None,
        axis: ValueAxis | None = None,
        axis_name: str | None = None,
        max_batch: int = 8,
        batch_window_s: float = 0.02,
        prefix_cache_mb: int = 1024,
        quantization: str | None = None,
        weights: str | None = None,
    ) -> None:
        self.model = model
        self.quantization = quantization
        self.weights = weights
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.revision = revision
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        cfg = model.config
        self._num_layers = num_layers(model)
        self._hidden = int(cfg.hidden_size)
        self.axis = axis
        self.axis_name = axis_name
        self.read_values = True
        if axis is not None:
            axis.check_model(model_id, self._num_layers, self._hidden)
        self._residual_norm: float | None = axis.residual_norm_mean if axis is not None else None
        self._device = next(model.parameters()).device
        self._eos = _eos_ids(model, tokenizer)
        self._cache_kw_is_cache = "cache" in inspect.signature(model.forward).parameters
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else sorted(self._eos)[0]
        self.prefixes = PrefixStore(prefix_cache_mb << 20) if prefix_cache_mb > 0 else None
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._scores: list[_Job] = []
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        # Futures of generations whose caller was cancelled after the worker took them: their rows leave the
        # batch at the next step. Written by callers' threads, swapped out by the worker.
        self._cancelled: set[cf.Future[Any]] = set()
        self._cancel_lock = threading.Lock()
        self.cancelled_rows = 0  # generations dropped by cancellation after the worker took them
        self.rows_decoding = 0  # rows in the worker's batch (updated once per step)
        self._closed = False

    # -- public API -------------------------------------------------------------------------------
    def info(self) -> ModelInfo:
        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        has_axis = self.axis is not None
        return ModelInfo(
            model_id=self.model_id,
            revision=self.revision,
            num_layers=self._num_layers,
            hidden_size=self._hidden,
            dtype=dtype,
            device=str(self._device),
            axis=self.axis_name,
            axis_layer=self.axis.layer if self.axis is not None else None,
            quantization=self.quantization,
            axis_sha256=self.axis.sha256 if self.axis is not None else None,
            # A model handed over in memory: its parameters' dtype is all that is known of its weights.
            weights=self.weights or dtype,
            has_axis=has_axis,
            per_token_values=has_axis and self.read_values,
            steering=has_axis,
        )

    async def generate(self, request: GenerationRequest, *, on_token: TokenCallback | None = None) -> Generation:
        """``on_token`` (this backend only, not the protocol): called per generated token, as it comes.
        Cancelling the awaiting task cancels the generation: a queued one never starts, a decoding one leaves
        the batch at the next step (no result is made for it)."""
        future = self._submit(_Job("generate", cf.Future(), request=request, on_token=on_token))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel():  # the worker took it already (a queued one is cancelled right here)
                with self._cancel_lock:
                    self._cancelled.add(future)
            raise

    async def score(self, messages: tuple[Message, ...], completion: str) -> Scored:
        job = _Job("score", cf.Future(), messages=tuple(messages), completion=completion)
        return await asyncio.wrap_future(self._submit(job))

    def generate_sync(self, request: GenerationRequest, *, on_token: TokenCallback | None = None) -> Generation:
        out: Generation = self._submit(_Job("generate", cf.Future(), request=request, on_token=on_token)).result()
        return out

    def score_sync(self, messages: tuple[Message, ...], completion: str) -> Scored:
        out: Scored = self._submit(_Job("score", cf.Future(), messages=tuple(messages), completion=completion)).result()
        return out

    @property
    def residual_norm(self) -> float:
        """Mean residual norm at the axis layer (position 0 excluded): the unit of steering fractions."""
        if self.axis is None:
            raise RuntimeError("no value axis is loaded: steering and residual norms need one (--axis PATH)")
        if self._residual_norm is None:
            worker = self._worker
            if worker is not None and worker is not threading.current_thread():
                # The worker owns the model while it decodes (its hook may sit on this very layer):
                # measure between its steps, not beside them.
                self._submit(_Job("norm", cf.Future())).result()
            else:
                self._measure_norm_once()
        assert self._residual_norm is not None
        return self._residual_norm

    def _measure_norm_once(self) -> None:
        assert self.axis is not None
        with self._lock, torch.inference_mode():
            if self._residual_norm is None:
                self._residual_norm = self._measure_norm(self.axis.layer)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(timeout=30)
            self._worker = None

    # -- worker -----------------------------------------------------------------------------------
    def _submit(self, job: _Job) -> cf.Future[Any]:
        if self._closed:
            raise RuntimeError("backend is closed")
        if job.kind == "generate" and job.request is not None and job.request.steer != 0 and self.axis is None:
            raise ValueError("steering needs a value axis: load one with --axis PATH (none is loaded)")
        if self._worker is None:
            with self._lock:
                if self._worker is None:
                    self._release_caller_pool()
                    self._worker = threading.Thread(target=self._run, name="valueagent-backend", daemon=True)
                    self._worker.start()
        self._jobs.put(job)
        return job.future

    def _release_caller_pool(self) -> None:
        """The worker will run every forward pass: free the OpenMP pool of the thread that loaded the
        model or starts the worker, so the worker's pool is the process's only one (see
        :func:`valueagent.runtime.cpu_kernels.release_openmp_pool`: two pools on a 2-core CPU made decode steps
        1.6x slower)."""
        if self._device.type == "cpu":
            release_openmp_pool()

    def _take(self, block: bool) -> tuple[list[_Job], bool]:
        """Jobs waiting in the queue (blocking for the first when idle) and whether to shut down."""
        jobs: list[_Job] = []
        try:
            first = self._jobs.get() if block else self._jobs.get_nowait()
        except queue.Empty:
            return jobs, False
        if first is None:
            return jobs, True
        jobs.append(first)
        # When idle, wait briefly so concurrent callers share the first prefill.
        wait = self.batch_window_s if block else 0.0
        while True:
            try:
                nxt = self._jobs.get(timeout=wait) if wait > 0 else self._jobs.get_nowait()
            except queue.Empty:
                return jobs, False
            if nxt is None:
                return jobs, True
            jobs.append(nxt)
            wait = min(wait, 0.002)

    def _run(self) -> None:
        backlog: deque[_Job] = deque()
        batch: DecodeBatch | None = None
        while True:
            self.rows_decoding = len(batch.rows) if batch is not None else 0
            idle = (batch is None or not batch.rows) and not backlog
            jobs, shutdown = self._take(block=idle)
            for job in jobs:
                if not job.future.set_running_or_notify_cancel():
                    continue
                if job.kind == "norm":
                    try:
                        job.future.set_result(self.residual_norm)
                    except Exception as exc:
                        job.future.set_exception(exc)
                    continue
                (backlog if job.kind == "generate" else self._scores).append(job)
            if shutdown:
                for job in [*backlog, *self._scores]:
                    job.future.set_exception(RuntimeError("backend closed"))
                if batch is not None:
                    for row in batch.rows:
                        row.future.set_exception(RuntimeError("backend closed"))
                return
            if self._scores:
                self._serve_scores()
            if batch is None or not batch.rows:
                batch = self._new_batch()
            self._drop_cancelled(batch, backlog)
            room = self.max_batch - len(batch.rows)
            if backlog and room > 0:
                admitted = [backlog.popleft() for _ in range(min(room, len(backlog)))]
                self._admit(batch, admitted)
            if batch.rows:
                try:
                    finished = self._step(batch)
                except Exception as exc:  # a failed step fails its rows, not the worker
                    log.exception("decode step failed")
                    for row in batch.rows:
                        row.future.set_exception(exc)
                    batch = None
                    continue
                for row, result in finished:
                    if row.finish != "cancelled":
                        row.future.set_result(result)

    def _drop_cancelled(self, batch: DecodeBatch, backlog: deque[_Job]) -> None:
        """Mark the rows of cancelled generations finished (the batch drops them at its next step, before the
        forward pass) and forget cancelled jobs not admitted yet."""
        with self._cancel_lock:
            cancelled, self._cancelled = self._cancelled, set()
        if not cancelled:
            return  # entries of generations that had finished are simply forgotten
        for row in batch.rows:
            if row.future in cancelled and row.finish is None:
                row.finish = "cancelled"
                self.cancelled_rows += 1
        kept = [job for job in backlog if job.future not in cancelled]
        self.cancelled_rows += len(backlog) - len(kept)
        backlog.clear()
        backlog.extend(kept)

    @torch.inference_mode()
    def _step(self, batch: DecodeBatch) -> list[tuple[Row, Generation]]:
        return batch.step(self.prefixes)

    def _new_batch(self) -> DecodeBatch:
        return DecodeBatch(
            model=self.model,
            forward=self._forward,
            decode=lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True),
            hook=self._hook(),
            layer=self.axis.layer if self.axis is not None else None,
            eos=self._eos,
            pad=self._pad,
            device=self._device,
        )

    @torch.inference_mode()
    def _admit(self, batch: DecodeBatch, jobs: list[_Job]) -> None:
        rows, prompts = [], []
        for job in jobs:
            req = job.request
            assert req is not None
            try:
                ids = self._encode(self.prompt_text(req))
                alpha = steer_alpha(req.steer, self.residual_norm) if req.steer != 0 else 0.0
            except Exception as exc:  # bad request: fail it alone
                job.future.set_exception(exc)
                continue
            rows.append(Row(req, job.future, len(ids), alpha, torch.Generator().manual_seed(int(req.seed)),
                            prompt_ids=tuple(ids), on_token=self._streamer(job.on_token)))
            prompts.append(ids)
        if not rows:
            return
        try:
            batch.admit(rows, prompts, self.prefixes)
        except Exception as exc:
            log.exception("prefill failed")
            for row in rows:
                row.future.set_exception(exc)

    def _streamer(self, callback: TokenCallback | None) -> Callable[[Row], None] | None:
        """The per-row hook that turns a decoded row's newest token into a :class:`TokenEvent`. Text is
        the growth of the decoded output, held back while it ends in an incomplete character; a callback
        that raises is logged and dropped, never the generation."""
        if callback is None:
            return None
        shown, failed = "", False

        def on_row(row: Row) -> None:
            nonlocal shown, failed
            if failed:
                return
            text = self.tokenizer.decode(row.toks, skip_special_tokens=True)
            delta = "" if text.endswith("\ufffd") or not text.startswith(shown) else text[len(shown):]
            shown += delta
            value = row.vals[-1] if len(row.vals) == len(row.toks) else None
            try:
                callback(TokenEvent(index=len(row.toks) - 1, token_id=row.toks[-1], text=delta,
                                    logprob=row.lps[-1], value=value))
            except Exception:
                log.exception("on_token callback failed; streaming stopped, generation goes on")
                failed = True

        return on_row

    def _serve_scores(self) -> None:
        jobs, self._scores = self._scores[: self.max_batch], self._scores[self.max_batch :]
        try:
            results = self._run_score(jobs)
        except Exception as exc:
            log.exception("scoring failed")
            for j in jobs:
                j.future.set_exception(exc)
            return
        for j, r in zip(jobs, results, strict=True):
            j.future.set_result(r)

    # -- tokenization -----------------------------------------------------------------------------
    def prompt_text(self, request: GenerationRequest) -> str:
        if request.messages is not None:
            from valueagent.runtime.loading import render_chat

            return render_chat(self.tokenizer, list(request.messages)) + request.assistant_prefix
        assert request.prompt is not None
        return request.prompt + request.assistant_prefix

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _hook(self) -> AxisHook | None:
        if self.axis is None:
            return None
        return AxisHook(torch.from_numpy(np.asarray(self.axis.direction, dtype=np.float32)), read=self.read_values)

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any, *, all_logits: bool = False
    ) -> Any:
        # transformers >= 5.2x renamed `past_key_values` to `cache`; older 5.x only knows the former.
        key = "cache" if self._cache_kw_is_cache else "past_key_values"
        # Decoding needs only the last position's logits: over a long prompt the full (B, T, vocab)
        # projection would cost more than the rest of the prefill.
        keep = {} if all_logits else {"logits_to_keep": 1}
        return self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=not all_logits,
                          **keep, **{key: cache})

    # -- teacher-forced scoring --------------------------------------------------------------------
    @torch.inference_mode()
    def _run_score(self, jobs: list[_Job]) -> list[Scored]:
        from valueagent.runtime.loading import render_chat

        rows, starts = [], []
        for j in jobs:
            assert j.messages is not None and j.completion is not None
            p = self._encode(render_chat(self.tokenizer, list(j.messages)))
            c = self._encode(j.completion)
            if not c:
                raise ValueError("cannot score an empty completion")
            rows.append(p + c)
            starts.append(len(p))
        ids, mask = left_pad(rows, self._pad, self._device)
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        hook = self._hook()
        if hook is not None and self.axis is not None:
            with attached(self.model, self.axis.layer, hook):
                out = self._forward(ids, mask, pos, None, all_logits=True)
                cos = hook.last
        else:
            out, cos = self._forward(ids, mask, pos, None, all_logits=True), None
        logp = torch.log_softmax(out.logits.float(), dim=-1)  # (B, T, V)
        width = ids.shape[1]
        results = []
        for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
            off = width - len(row)
            idx = list(range(off + start, width))
            targets = ids[i, idx]
            lp = logp[i, [k - 1 for k in idx]].gather(1, targets[:, None])[:, 0]
            results.append(
                Scored(
                    values=[float(v) for v in cos[i, idx]] if cos is not None else [],
                    logprobs=[float(v) for v in lp],
                    token_ids=row[start:],
                    layer=self.axis.layer if self.axis is not None else None,
                )
            )
        return results

    @torch.inference_mode()
    def _measure_norm(self, layer: int) -> float:
        norms: list[torch.Tensor] = []
        for text in _NORM_TEXTS:
            ids = torch.tensor([self._encode(text)], device=self._device)
            hs = self.model(input_ids=ids, output_hidden_states=True).hidden_states[layer]
            norms.append(hs[0, 1:].float().norm(dim=-1))  # position 0 is an outlier: excluded
        return float(torch.cat(norms).mean())


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    gen_cfg = getattr(model, "generation_config", None)
    eos = getattr(gen_cfg, "eos_token_id", None) if gen_cfg is not None else None
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, list | tuple):
        ids.update(int(e) for e in eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    for tok in ("<|im_end|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return ids


BackendLoader = Callable[..., ValueBackend]
"""``loader(spec, *, axis, device, dtype, max_batch, quantize, prefix_cache_mb) -> ValueBackend``."""
BACKEND_ENTRY_POINTS = "valueagent.backends"
_SCHEMES: dict[str, BackendLoader] = {}


def register_backend(scheme: str, loader: BackendLoader, *, replace: bool = False) -> None:
    """Serve model specs ``<scheme>://...`` with ``loader`` (``local``: specs without a scheme). Packages may
    register through the ``valueagent.backends`` entry point group (name = scheme, value = loader)."""
    if scheme in _SCHEMES and not replace and _SCHEMES[scheme] is not loader:
        raise ValueError(f"backend scheme {scheme!r} is already registered; pass replace=True to redefine it")
    _SCHEMES[scheme] = loader


def scheme_of(spec: str) -> str:
    """``http`` for ``http://HOST:PORT``; ``local`` for an embedded name, a model id or a folder."""
    head, sep, _ = spec.partition("://")
    return head.lower() if sep and head.isalnum() else "local"


def _loader(scheme: str, spec: str) -> BackendLoader:
    if scheme not in _SCHEMES:
        from importlib.metadata import entry_points

        for ep in entry_points(group=BACKEND_ENTRY_POINTS, name=scheme):
            register_backend(scheme, ep.load())
    try:
        return _SCHEMES[scheme]
    except KeyError:
        raise ValueError(f"--model {spec}: no backend serves {scheme}:// (known: {', '.join(sorted(_SCHEMES))}); "
                         "give an embedded name, a model id or folder, or http://HOST:PORT, or install the package "
                         f"that registers it (entry point group {BACKEND_ENTRY_POINTS})") from None


def load_backend(
    model: str = "embedded",
    *,
    axis: str | None = "default",
    device: str | None = None,
    dtype: str | None = None,
    max_batch: int = 8,
    quantize: str | None = None,
    prefix_cache_mb: int = 1024,
) -> ValueBackend:
    """Load a model by spec and its value axis, through the backend registered for the spec's scheme
    (:func:`register_backend`): ``local`` (an embedded name, a model id or folder: :class:`HFBackend`) or
    ``http``/``https`` (a ``valueagent serve`` server: :class:`valueagent.runtime.http.HTTPBackend`, whose
    model, axis, dtype and prefix cache apply). ``axis``: ``"default"`` (the shipped axis for this model, or
    none if there is none), a path to an axis artifact, or None. ``quantize``: ``"int8"`` to decode through int8
    linear layers on a CPU (:func:`valueagent.runtime.loading.load_model`). ``prefix_cache_mb``: see
    :class:`HFBackend`. An unknown scheme is an error naming the known ones."""
    loader = _loader(scheme_of(model), model)
    return loader(model, axis=axis, device=device, dtype=dtype, max_batch=max_batch, quantize=quantize,
                  prefix_cache_mb=prefix_cache_mb)


def _http_backend(model: str, *, axis: str | None, device: str | None, dtype: str | None, max_batch: int,
                  quantize: str | None, prefix_cache_mb: int) -> ValueBackend:
    from valueagent.runtime.http import connect_backend

    return connect_backend(model, axis=axis, device=device, dtype=dtype, quantize=quantize)


def _local_backend(model: str, *, axis: str | None, device: str | None, dtype: str | None, max_batch: int,
                   quantize: str | None, prefix_cache_mb: int) -> HFBackend:
    from valueagent.runtime.artifact import load_axis, shipped_axis_path
    from valueagent.runtime.loading import load_model

    loaded = load_model(model, device=device, dtype=dtype, quantize=quantize)
    axis_obj, axis_name = None, None
    if axis == "default":
        path = shipped_axis_path(loaded.model_id)
        if path is not None:
            axis_obj, axis_name = load_axis(path), f"default:{loaded.model_id}"
    elif axis is not None:
        axis_obj, axis_name = load_axis(axis), str(axis)
    return HFBackend(
        loaded.model,
        loaded.tokenizer,
        model_id=loaded.model_id,
        revision=loaded.revision,
        axis=axis_obj,
        axis_name=axis_name,
        max_batch=max_batch,
        prefix_cache_mb=prefix_cache_mb,
        quantization=loaded.quantization,
        weights=loaded.weights,
    )


register_backend("local", _local_backend)
register_backend("http", _http_backend)
register_backend("https", _http_backend)
