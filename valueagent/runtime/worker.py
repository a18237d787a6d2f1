"""The worker every local backend shares: one thread owns the model and batches requests in flight.

Callers submit jobs (generate, score, measure the residual norm) from any thread or event loop; the worker
admits generations into a running :class:`~valueagent.runtime.decoding.RowBatch` after their own prefill,
steps it, hands finished rows back at once, and drops the rows of cancelled callers at the next step. What a
step runs on (transformers, llama.cpp) is the subclass's: its batch, its teacher-forced scoring, its
residual-norm measurement and its :class:`~valueagent.runtime.generation.ModelInfo`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from valueagent.runtime.artifact import ValueAxis
from valueagent.runtime.decoding import PrefixStore, Row, RowBatch
from valueagent.runtime.generation import (
    Generation,
    GenerationRequest,
    Message,
    ModelInfo,
    Scored,
    TokenCallback,
    TokenEvent,
)

log = logging.getLogger(__name__)

# Texts for measuring the mean residual norm when an axis carries no norm statistics.
NORM_TEXTS = (
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog while the band plays a slow song.",
    "Let me check the result again: the sum of the first ten numbers is 55, so the answer is right.",
    "import os\n\nfor name in sorted(os.listdir('.')):\n    print(name.upper())\n",
)


def eos_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """Token ids that end a generation: the generation config's (a transformers model has one), the tokenizer's
    eos, and the chat template's end-of-turn tokens."""
    ids: set[int] = set()
    eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
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


def steer_alpha(fraction: float, residual_norm: float) -> float:
    """Steering strength in residual units from a fraction of the mean residual norm (0.168 = 16.8%)."""
    return float(fraction) * float(residual_norm)


@dataclass
class Job:
    kind: str  # "generate" | "score" | "norm"
    future: cf.Future[Any]
    request: GenerationRequest | None = None
    messages: tuple[Message, ...] | None = None
    completion: str | None = None
    on_token: TokenCallback | None = None


class BatchingBackend:
    """A :class:`~valueagent.runtime.generation.ValueBackend` whose worker thread batches generations.

    ``axis`` may be None: generation then works and ``values`` stay empty; steering needs an axis.
    ``prefixes`` keeps the keys and values of finished rows for prefix reuse (None: no reuse), where the
    subclass's batch supports it. Subclasses give ``_new_batch``, ``_run_score``, ``_measure_norm`` and
    ``info``.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        model_id: str,
        revision: str | None,
        axis: ValueAxis | None,
        axis_name: str | None,
        max_batch: int,
        batch_window_s: float,
        prefixes: PrefixStore | None,
        quantization: str | None,
        weights: str | None,
        num_layers: int,
        hidden: int,
        eos: set[int],
    ) -> None:
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.revision = revision
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self.quantization = quantization
        self.weights = weights
        self._num_layers = num_layers
        self._hidden = hidden
        self.axis = axis
        self.axis_name = axis_name
        self.read_values = True
        if axis is not None:
            axis.check_model(model_id, num_layers, hidden)
        self._residual_norm: float | None = axis.residual_norm_mean if axis is not None else None
        self._eos = eos
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else sorted(eos)[0]
        self.prefixes = prefixes
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._scores: list[Job] = []
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        # Futures of generations whose caller was cancelled after the worker took them: their rows leave the
        # batch at the next step. Written by callers' threads, swapped out by the worker.
        self._cancelled: set[cf.Future[Any]] = set()
        self._cancel_lock = threading.Lock()
        self.cancelled_rows = 0  # generations dropped by cancellation after the worker took them
        self.rows_decoding = 0  # rows in the worker's batch (updated once per step)
        self._closed = False

    # -- what a subclass runs on ---------------------------------------------------------------------
    def info(self) -> ModelInfo:
        raise NotImplementedError

    def _new_batch(self) -> RowBatch:
        raise NotImplementedError

    def _run_score(self, jobs: list[Job]) -> list[Scored]:
        raise NotImplementedError

    def _measure_norm(self, layer: int) -> float:
        raise NotImplementedError

    def _release_caller_pool(self) -> None:
        """Called once, before the worker starts, in the thread that starts it."""

    # -- public API -------------------------------------------------------------------------------
    async def generate(self, request: GenerationRequest, *, on_token: TokenCallback | None = None) -> Generation:
        """``on_token`` (this backend only, not the protocol): called per generated token, as it comes.
        Cancelling the awaiting task cancels the generation: a queued one never starts, a decoding one leaves
        the batch at the next step (no result is made for it)."""
        future = self._submit(Job("generate", cf.Future(), request=request, on_token=on_token))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel():  # the worker took it already (a queued one is cancelled right here)
                with self._cancel_lock:
                    self._cancelled.add(future)
            raise

    async def score(self, messages: tuple[Message, ...], completion: str) -> Scored:
        job = Job("score", cf.Future(), messages=tuple(messages), completion=completion)
        return await asyncio.wrap_future(self._submit(job))

    def generate_sync(self, request: GenerationRequest, *, on_token: TokenCallback | None = None) -> Generation:
        out: Generation = self._submit(Job("generate", cf.Future(), request=request, on_token=on_token)).result()
        return out

    def score_sync(self, messages: tuple[Message, ...], completion: str) -> Scored:
        out: Scored = self._submit(Job("score", cf.Future(), messages=tuple(messages), completion=completion)).result()
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
                self._submit(Job("norm", cf.Future())).result()
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
    def _submit(self, job: Job) -> cf.Future[Any]:
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

    def _take(self, block: bool) -> tuple[list[Job], bool]:
        """Jobs waiting in the queue (blocking for the first when idle) and whether to shut down."""
        jobs: list[Job] = []
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
        backlog: deque[Job] = deque()
        batch: RowBatch | None = None
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
                    batch.abandon()
                    batch = None
                    continue
                for row, result in finished:
                    if row.finish != "cancelled":
                        row.future.set_result(result)

    def _drop_cancelled(self, batch: RowBatch, backlog: deque[Job]) -> None:
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
    def _step(self, batch: RowBatch) -> list[tuple[Row, Generation]]:
        return batch.step(self.prefixes)

    @torch.inference_mode()
    def _admit(self, batch: RowBatch, jobs: list[Job]) -> None:
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

    def score_ids(self, job: Job) -> tuple[list[int], list[int]]:
        """A score job's token ids: the chat-rendered prompt's and the completion's (not empty)."""
        from valueagent.runtime.loading import render_chat

        assert job.messages is not None and job.completion is not None
        completion = self._encode(job.completion)
        if not completion:
            raise ValueError("cannot score an empty completion")
        return self._encode(render_chat(self.tokenizer, list(job.messages))), completion

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

