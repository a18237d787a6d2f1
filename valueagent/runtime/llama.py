"""The llama.cpp backend: GGUF models decoded by llama.cpp, the value read and steered in the same pass.

llama.cpp runs the model (through llama-cpp-python's low-level API); the rest is valueagent's own, shared
with the transformers backend: the worker and its batching (:class:`~valueagent.runtime.worker.BatchingBackend`),
the rows' bookkeeping and the sampler (:class:`~valueagent.runtime.decoding.RowBatch`,
:func:`~valueagent.runtime.decoding.sample_next`: a seed means the same draw on both), the tokenizer and chat
template (transformers' tokenizer of the same GGUF, so token ids agree).

- **Reading.** An evaluation callback written in C (``llama_read.c``, built once per machine by the system
  compiler: a Python callback is asked about ~800 graph nodes per step and cost 14% of a step) copies the
  output of the axis layer's block (``l_out-<L-1>``: valueagent's layer ``L`` is the output of block ``L-1``,
  :mod:`valueagent.runtime.layers`) for every token of a batch. The value is the axis's reading of that residual
  before steering (the cosine with the axis; for an exported head, its linear logit), computed in numpy: no
  second pass.
- **Steering** is a llama.cpp control vector at the axis layer's block: a constant ``alpha * unit(axis)``
  added to the residual, exactly the transformers hook's addition. A context holds one control vector, so
  rows with different steering decode in separate calls of one step; the value read subtracts the vector
  again (the hook reads before it adds).
- **Batching.** Every row owns a sequence of one unified KV cache; a task's N samples prefill their prompt
  once and copy it (``llama_memory_seq_cp``). Finished unsteered rows stay cached as sequences of their own
  (least recently used dropped) and a later prompt that extends one copies the shared prefix: the agent's
  next segment prefills only its new tokens, as on the transformers backend.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from valueagent.runtime.artifact import ValueAxis, residual_value, resolve_axis
from valueagent.runtime.decoding import PREFIX_MIN_TOKENS, PrefixStore, Row, RowBatch, longest_prefix
from valueagent.runtime.errors import ModelLoadError
from valueagent.runtime.generation import ModelInfo, Scored
from valueagent.runtime.worker import NORM_TEXTS, BatchingBackend, Job, eos_ids

log = logging.getLogger(__name__)
T = TypeVar("T")

LLAMA_CPP_PYTHON = "0.3.36"
"""The llama-cpp-python release this backend is written and tested against (its low-level API changes)."""
INSTALL_HINT = (f"pip install llama-cpp-python=={LLAMA_CPP_PYTHON} (built from its sdist: about 10 minutes on "
                "2 cores, needs a C/C++ compiler and cmake), or pass --backend hf for the transformers path")
_READER_SOURCE = Path(__file__).with_name("llama_read.c")
_MAX_WATCH = 256  # VA_MAX_LAYERS in llama_read.c


class KVCacheFull(RuntimeError):
    """A decode call found no room in the KV cache."""


class LlamaBackendError(ModelLoadError):
    """The llama.cpp backend cannot run here (no llama-cpp-python, no compiler, a model it cannot serve)."""


def llama_cpp() -> Any:
    """The ``llama_cpp`` module, or an error naming how to install it."""
    try:
        import llama_cpp as lib
    except ImportError as exc:
        raise LlamaBackendError(f"the llama.cpp backend needs llama-cpp-python ({exc}): {INSTALL_HINT}") from None
    version = getattr(lib, "__version__", "?")
    if version != LLAMA_CPP_PYTHON:
        raise LlamaBackendError(f"llama-cpp-python {version} is installed, the llama.cpp backend needs exactly "
                                f"{LLAMA_CPP_PYTHON}: {INSTALL_HINT}")
    return lib


class _Reader(ctypes.Structure):
    _fields_ = [
        ("n_watch", ctypes.c_int32),
        ("blocks", ctypes.c_int32 * _MAX_WATCH),
        ("bufs", ctypes.POINTER(ctypes.c_float) * _MAX_WATCH),
        ("cap", ctypes.c_int64),
        ("got", ctypes.c_int64 * _MAX_WATCH),
        ("overflow", ctypes.c_int64),
    ]


def _lib_dir(lib: Any) -> Path:
    return Path(lib.__file__).parent / "lib"


def reader_library(root: Path | None = None) -> ctypes.CDLL:
    """The compiled residual reader, built on first use into the cache (keyed by its source and llama-cpp-python's
    version) with ``$CC`` or ``cc``, linked against llama-cpp-python's ``libggml-base``."""
    from valueagent.runtime.embedded import _lock, cache_root

    lib = llama_cpp()
    source = _READER_SOURCE.read_bytes()
    key = hashlib.sha256(source + LLAMA_CPP_PYTHON.encode()).hexdigest()[:16]
    folder = (root or cache_root()) / "llama-reader"
    target = folder / f"llama_read-{key}.so"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        with _lock(folder / ".build.lock"):
            if not target.is_file():
                _build_reader(target, _lib_dir(lib))
    return ctypes.CDLL(str(target))


def _build_reader(target: Path, lib_dir: Path) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise LlamaBackendError("the llama.cpp backend builds a small C callback once and finds no C compiler: "
                                "install one (apt-get install gcc) or set CC, or pass --backend hf")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        cmd = [cc, "-O2", "-shared", "-fPIC", str(_READER_SOURCE), "-o", str(out), f"-L{lib_dir}", "-lggml-base",
               f"-Wl,-rpath,{lib_dir}"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LlamaBackendError(f"building the llama.cpp residual reader failed ({' '.join(cmd)}): "
                                    f"{done.stderr.strip()[-500:]}; pass --backend hf to use transformers")
        os.replace(out, target)


def _threads() -> int:
    """The cores this process may use (its CPU affinity, e.g. ``taskset``), at most ``OMP_NUM_THREADS`` when set
    (what a Ray replica or a bank builder is granted): the same count the transformers path computes with."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        cores = max(1, os.cpu_count() or 1)
    granted = os.environ.get("OMP_NUM_THREADS", "")
    return min(cores, int(granted)) if granted.isdigit() and int(granted) > 0 else cores


class LlamaModel:
    """One GGUF model in one llama.cpp context: a unified KV cache of ``n_seq`` sequences and a reader of the
    outputs of ``blocks`` (llama.cpp block indices) for every token a decode call runs."""

    def __init__(self, path: Path, *, n_ctx: int, n_seq: int, blocks: Sequence[int], n_batch: int = 256,
                 threads: int | None = None) -> None:
        lib = self.lib = llama_cpp()
        self._reader_lib = reader_library()
        lib.llama_backend_init()
        _quiet(lib)
        mparams = lib.llama_model_default_params()
        self.model = lib.llama_model_load_from_file(str(path).encode(), mparams)
        if not self.model:
            raise LlamaBackendError(f"llama.cpp could not load {path}: is it a GGUF file of a supported architecture?")
        self.n_embd = int(lib.llama_model_n_embd(self.model))
        self.n_layer = int(lib.llama_model_n_layer(self.model))
        self.n_vocab = int(lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(self.model)))
        bad = [b for b in blocks if not 0 <= b < self.n_layer]
        if bad or len(blocks) > _MAX_WATCH:
            lib.llama_model_free(self.model)
            raise LlamaBackendError(f"layer {bad[0] + 1 if bad else '?'} is beyond this model's {self.n_layer} "
                                    f"blocks: use 1..{self.n_layer}")
        self.blocks = list(blocks)
        self.n_batch = n_batch
        self.n_ctx = n_ctx
        self.n_seq = n_seq
        # The reader: one buffer per watched block, room for a whole decode call.
        self._bufs = [np.zeros(n_batch * self.n_embd, dtype=np.float32) for _ in self.blocks]
        self._reader = _Reader()
        self._reader.n_watch = len(self.blocks)
        for k, (b, buf) in enumerate(zip(self.blocks, self._bufs, strict=True)):
            self._reader.blocks[k] = b
            self._reader.bufs[k] = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        self._reader.cap = n_batch * self.n_embd
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = n_seq
        cparams.kv_unified = True  # one stream: sequence copies share cells, ubatches keep the batch's order
        cparams.n_threads = cparams.n_threads_batch = threads or _threads()
        cparams.no_perf = True
        callback = ctypes.cast(self._reader_lib.va_eval_cb, ctypes.c_void_p).value
        cparams.cb_eval = lib.ggml_backend_sched_eval_callback(callback)
        cparams.cb_eval_user_data = ctypes.cast(ctypes.pointer(self._reader), ctypes.c_void_p)
        self._cparams = cparams  # the callback object must outlive the context
        self.ctx = lib.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            lib.llama_model_free(self.model)
            raise LlamaBackendError(f"llama.cpp could not make a context of {n_ctx} tokens for {path}")
        self.mem = lib.llama_get_memory(self.ctx)
        self._batch = lib.llama_batch_init(n_batch, 0, 1)
        self._steer: tuple[int, float] | None = None

    # -- steering -----------------------------------------------------------------------------------
    def set_steering(self, block: int, vector: np.ndarray | None) -> None:
        """Add ``vector`` to the output of ``block`` in every later decode call (None: add nothing)."""
        lib = self.lib
        if vector is None:
            lib.llama_set_adapter_cvec(self.ctx, None, 0, self.n_embd, -1, -1)
            return
        if block < 1:
            raise LlamaBackendError("llama.cpp cannot steer the first block's output (layer 1): use an axis of "
                                    "layer 2 or above")
        data = np.zeros(block * self.n_embd, dtype=np.float32)  # data[n_embd * (il - 1) ...] is block il's
        data[(block - 1) * self.n_embd:] = vector
        ok = lib.llama_set_adapter_cvec(self.ctx, data.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), data.size,
                                        self.n_embd, block, block)
        if ok != 0:
            raise LlamaBackendError(f"llama.cpp refused a control vector at block {block}")

    # -- decoding -----------------------------------------------------------------------------------
    def decode(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int],
               logits: Sequence[bool]) -> None:
        """One ``llama_decode`` call (at most ``n_batch`` tokens). Afterwards :meth:`logits_of` gives the logits
        of the i-th token (where asked) and :meth:`residuals` the watched blocks' outputs of every token."""
        n = len(tokens)
        if not 0 < n <= self.n_batch:
            raise ValueError(f"a decode call takes 1..{self.n_batch} tokens, got {n}")
        b = self._batch
        for i, (t, p, s, lg) in enumerate(zip(tokens, positions, seqs, logits, strict=True)):
            b.token[i] = t
            b.pos[i] = p
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = s
            b.logits[i] = lg
        b.n_tokens = n
        for k in range(len(self.blocks)):
            self._reader.got[k] = 0
        self._reader.overflow = 0
        rc = self.lib.llama_decode(self.ctx, b)
        if rc == 1:
            raise KVCacheFull(f"no room in the KV cache of {self.n_ctx} tokens for {n} more: decode fewer rows at "
                              "once (--concurrency) or give the backend a larger n_ctx")
        if rc != 0:
            raise RuntimeError(f"llama_decode failed (code {rc}; llama.cpp's log says why: run with --debug)")
        if self._reader.overflow:
            raise RuntimeError(f"the residual reader overflowed by {self._reader.overflow} floats")

    def watch(self, blocks: Sequence[int]) -> None:
        """Read the outputs of ``blocks`` from the next decode call on."""
        if len(blocks) != len(self.blocks):
            raise ValueError(f"watch {len(self.blocks)} blocks, as the context was made for")
        for k, b in enumerate(blocks):
            if not 0 <= b < self.n_layer:
                raise LlamaBackendError(f"layer {b + 1} is beyond this model's {self.n_layer} blocks")
            self._reader.blocks[k] = b
        self.blocks = list(blocks)

    def logits_of(self, i: int) -> np.ndarray:
        ptr = self.lib.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def residuals(self, k: int = 0) -> np.ndarray:
        """(tokens, n_embd) outputs of the k-th watched block in the last decode call (a view: copy to keep)."""
        got = int(self._reader.got[k])
        return self._bufs[k][:got].reshape(got // self.n_embd, self.n_embd)

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> None:
        self.lib.llama_memory_seq_rm(self.mem, seq, p0, p1)

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        self.lib.llama_memory_seq_cp(self.mem, src, dst, p0, p1)

    def prefill(self, ids: Sequence[int], seq: int, start: int = 0, *, read: bool = False,
                logits_from: int | None = None) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Run ``ids[start:]`` on sequence ``seq`` in calls of ``n_batch``: ``(logits of every position from
        ``logits_from`` on (default: the last only), residuals of the first watched block over the run tokens
        (when ``read``))``."""
        first = len(ids) - 1 if logits_from is None else logits_from
        self.seq_rm(seq, start, -1)  # a retry after a full cache starts clean
        out_logits: list[np.ndarray] = []
        reads: list[np.ndarray] = []
        for lo in range(start, len(ids), self.n_batch):
            hi = min(lo + self.n_batch, len(ids))
            flags = [p >= first for p in range(lo, hi)]
            self.decode(ids[lo:hi], range(lo, hi), [seq] * (hi - lo), flags)
            out_logits += [self.logits_of(i) for i, f in enumerate(flags) if f]
            if read:
                reads.append(self.residuals(0).copy())
        return out_logits, (np.concatenate(reads) if read else None)

    def close(self) -> None:
        lib = self.lib
        if getattr(self, "ctx", None):
            lib.llama_batch_free(self._batch)
            lib.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            lib.llama_model_free(self.model)
            self.model = None


def _quiet(lib: Any) -> None:
    """Send llama.cpp's log (a page per model load) to this module's logger at debug level."""
    global _LOG_CB
    if _LOG_CB is None:
        def forward(level: int, text: bytes, user: Any) -> None:
            log.debug("llama.cpp: %s", text.decode(errors="replace").rstrip())

        _LOG_CB = lib.llama_log_callback(forward)
        lib.llama_log_set(_LOG_CB, ctypes.c_void_p(0))


_LOG_CB: Any = None


@dataclass
class _Kept:
    """A finished unsteered row kept in the KV cache as sequence ``seq``: the tokens it holds."""

    seq: int
    ids: tuple[int, ...]


class LlamaBatch(RowBatch):
    """The rows of a :class:`LlamaBackend`: each decodes on its own sequence of the shared KV cache."""

    def __init__(self, backend: LlamaBackend) -> None:
        axis = backend.axis
        super().__init__(decode=backend.decode_text, layer=axis.layer if axis is not None else None,
                         reading=axis is not None and backend.read_values, eos=backend.eos_ids)
        self.b = backend
        self.seq_of: dict[int, int] = {}  # id(row) -> sequence

    # -- prefill ------------------------------------------------------------------------------------
    def admit(self, rows: list[Row], prompts: list[list[int]], store: PrefixStore | None = None) -> None:
        """Prefill ``rows``: rows with the same prompt and steering (a task's N samples) run it once and copy
        the sequence; an unsteered prompt that extends a kept row copies the shared prefix and runs the rest."""
        groups: dict[tuple[Any, ...], list[tuple[Row, list[int]]]] = {}
        for row, ids in zip(rows, prompts, strict=True):
            groups.setdefault((tuple(ids), row.alpha, row.request.steer_generated_only), []).append((row, ids))
        for (ids_key, alpha, generated_only), members in groups.items():
            ids = list(ids_key)
            seqs = [self.b.take_seq() for _ in members]
            try:
                n = self.b.reuse_prefix(ids, seqs[0]) if alpha == 0 else 0
                self.b.steer(alpha if not generated_only else 0.0)
                logits, _ = self.b.with_room(self.b.model.prefill, ids, seqs[0], start=n)
            except Exception:
                for seq in seqs:
                    self.b.free_seq(seq)
                raise
            for (row, _), seq in zip(members, seqs, strict=True):
                self.seq_of[id(row)] = seq
            for seq in seqs[1:]:
                self.b.model.seq_cp(seqs[0], seq)
            for row, _ in members:
                row.cached = n
            last = torch.from_numpy(logits[-1])[None].expand(len(members), -1)
            self._start([r for r, _ in members], last)

    # -- a step -------------------------------------------------------------------------------------
    def _feed(self) -> tuple[torch.Tensor, list[float] | None, torch.Tensor | None]:
        model, n = self.b.model, len(self.rows)
        logits = torch.empty((n, model.n_vocab))
        hidden = np.zeros((n, model.n_embd), dtype=np.float32) if self.reading else None
        by_alpha: dict[float, list[int]] = {}
        for i, row in enumerate(self.rows):
            by_alpha.setdefault(row.alpha, []).append(i)
        for alpha, idx in by_alpha.items():
            self.b.steer(alpha)
            rows = [self.rows[i] for i in idx]
            tokens, positions = [int(self.pending[i]) for i in idx], [r.prompt_len + len(r.toks) - 1 for r in rows]
            seqs = [self.seq_of[id(r)] for r in rows]
            self.b.with_room(model.decode, tokens, positions, seqs, [True] * len(tokens))
            for j, i in enumerate(idx):
                logits[i] = torch.from_numpy(model.logits_of(j))
            if hidden is not None:
                h = model.residuals(0)[: len(idx)]
                hidden[idx] = h - alpha * self.b.unit if alpha else h  # read before the steering vector
        if hidden is None:
            return logits, None, None
        return logits, self.b.values_of(hidden).tolist(), torch.from_numpy(hidden)

    def abandon(self) -> None:
        for seq in self.seq_of.values():
            self.b.free_seq(seq)
        self.seq_of.clear()
        self.rows = []

    def _drop(self, keep: list[int], store: PrefixStore | None) -> None:
        kept = set(keep)
        for i, row in enumerate(self.rows):
            if i in kept:
                continue
            seq = self.seq_of.pop(id(row))
            if row.alpha == 0 and row.finish != "cancelled":  # every recorded token has been fed
                self.b.keep_seq(seq, (*row.prompt_ids, *row.toks))
            else:
                self.b.free_seq(seq)


class LlamaBackend(BatchingBackend):
    """A :class:`~valueagent.runtime.generation.ValueBackend` over a GGUF file run by llama.cpp.

    ``max_batch`` rows decode at once, each on its own sequence; ``kept`` finished unsteered rows stay cached
    for prefix reuse (0: none; dropped first when the cache is full); ``n_ctx`` is the KV cache's size in tokens,
    shared by all of them (default: 1024 per row, 4096 to 16384). Memory beside the mmapped GGUF: the KV cache
    (f16: 12 KB a token for the 0.5B, 28 KB for the 1.5B) and compute buffers sized for one call of at most 256
    tokens with their logits (~155 MB at a 152k vocabulary).
    """

    backend_name = "llama.cpp"

    def __init__(self, gguf: Path, tokenizer: Any, *, model_id: str, axis: ValueAxis | None = None,
                 axis_name: str | None = None, max_batch: int = 8, batch_window_s: float = 0.02, kept: int = 8,
                 n_ctx: int | None = None, weights: str | None = None, revision: str | None = None,
                 threads: int | None = None) -> None:
        self.gguf = Path(gguf)
        n_blocks, n_embd = _gguf_shape(self.gguf)
        if axis is not None:  # before llama.cpp loads anything
            axis.check_model(model_id, n_blocks, n_embd)
            if not 1 <= axis.layer <= n_blocks:
                raise LlamaBackendError(f"the axis is at layer {axis.layer}, beyond this model's {n_blocks} blocks: "
                                        "build an axis for this model (valueagent axis build)")
        blocks = [axis.layer - 1] if axis is not None else [n_blocks // 2]
        n_ctx = n_ctx or min(16384, max(4096, 1024 * max_batch))
        self.model = LlamaModel(self.gguf, n_ctx=n_ctx, n_seq=max_batch + kept + 1, blocks=blocks, threads=threads)
        super().__init__(
            tokenizer, model_id=model_id, revision=revision, axis=axis, axis_name=axis_name, max_batch=max_batch,
            batch_window_s=batch_window_s, prefixes=None, quantization=None, weights=weights,
            num_layers=self.model.n_layer, hidden=self.model.n_embd, eos=eos_ids(tokenizer))
        self.block = blocks[0]
        self.unit = np.zeros(self.model.n_embd, dtype=np.float32)
        self.read_vector = self.unit
        self._axis_seen: ValueAxis | None = None
        self._sync_axis()
        self._free = list(range(max_batch + kept))  # sequences for rows and kept rows; the last one is scratch
        self._scratch = max_batch + kept
        self._kept: OrderedDict[int, _Kept] = OrderedDict()
        self._max_kept = kept
        self._alpha = 0.0
        self.prefix_lookups = self.prefix_hits = self.reused_tokens = 0

    # -- what the batch needs -----------------------------------------------------------------------
    def _sync_axis(self) -> None:
        """Follow ``self.axis`` (it may be set after loading, as the benchmark's random direction is): watch its
        layer's block and keep its unit vector."""
        axis = self.axis
        if axis is self._axis_seen:
            return
        if axis is not None:
            if not 1 <= axis.layer <= self._num_layers:
                raise LlamaBackendError(f"the axis is at layer {axis.layer}, beyond this model's {self._num_layers} "
                                        "blocks: build an axis for this model (valueagent axis build)")
            direction = np.asarray(axis.direction, dtype=np.float32)
            self.unit = direction / np.linalg.norm(direction)
            self.read_vector = axis.reading_vector()
            self.block = axis.layer - 1
            self.model.watch([self.block])
        self._axis_seen = axis

    @property
    def eos_ids(self) -> set[int]:
        return self._eos

    def decode_text(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def values_of(self, h: np.ndarray) -> np.ndarray:
        """The axis's value of residuals ``h`` (its reading rule: cosine, or linear for an exported head)."""
        assert self.axis is not None
        out: np.ndarray = residual_value(h, self.read_vector, linear=self.axis.reading == "linear",
                                         bias=self.axis.bias)
        return out

    def steer(self, alpha: float) -> None:
        """Make later decode calls add ``alpha * unit(axis)`` at the axis layer (0: nothing)."""
        if alpha == self._alpha:
            return
        self.model.set_steering(self.block, alpha * self.unit if alpha else None)
        self._alpha = alpha

    def take_seq(self) -> int:
        if not self._free:
            self.free_seq(self._kept.popitem(last=False)[0])  # the least recently used kept row makes room
        return self._free.pop(0)

    def free_seq(self, seq: int) -> None:
        self.model.seq_rm(seq)
        self._kept.pop(seq, None)
        self._free.append(seq)

    def keep_seq(self, seq: int, ids: tuple[int, ...]) -> None:
        if self._max_kept == 0 or len(ids) < PREFIX_MIN_TOKENS:
            self.free_seq(seq)
            return
        self._kept[seq] = _Kept(seq, ids)
        while len(self._kept) > self._max_kept:
            self.free_seq(next(iter(self._kept)))

    def with_room(self, run: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``run(*args, **kwargs)`` (decode calls), dropping kept rows, least recently used first, while the KV
        cache is full."""
        while True:
            try:
                return run(*args, **kwargs)
            except KVCacheFull:
                if not self._kept:
                    raise
                self.free_seq(next(iter(self._kept)))

    def reuse_prefix(self, ids: list[int], seq: int) -> int:
        """Copy into ``seq`` the longest prefix of ``ids`` a kept row holds (:func:`longest_prefix`: at least
        ``PREFIX_MIN_TOKENS``, leaving one to run); return its length (0: none)."""
        self.prefix_lookups += 1
        best, best_seq = longest_prefix(((k.seq, k.ids) for k in self._kept.values()), ids, PREFIX_MIN_TOKENS)
        if best_seq is None:
            return 0
        self._kept.move_to_end(best_seq)
        self.model.seq_cp(best_seq, seq, 0, best)
        self.prefix_hits += 1
        self.reused_tokens += best
        return best

    # -- the worker's ---------------------------------------------------------------------------------
    def info(self) -> ModelInfo:
        axis = self.axis
        has_axis = axis is not None
        return ModelInfo(
            model_id=self.model_id, revision=self.revision, num_layers=self._num_layers, hidden_size=self._hidden,
            dtype="float32", device="cpu", axis=self.axis_name, axis_layer=axis.layer if axis is not None else None,
            quantization=None, axis_sha256=axis.sha256 if axis is not None else None,
            weights=self.weights or "GGUF", has_axis=has_axis, per_token_values=has_axis and self.read_values,
            steering=has_axis, backend=self.backend_name)

    def _release_caller_pool(self) -> None:
        """Give torch one thread: here it only samples, and its OpenMP pool, spinning after each sampling beside
        llama.cpp's own threads, made 2-core decode steps ~20% slower (measured: 32 against 40 tokens/s)."""
        torch.set_num_threads(1)

    def _new_batch(self) -> RowBatch:
        self._sync_axis()
        return LlamaBatch(self)

    def _run_score(self, jobs: list[Job]) -> list[Scored]:
        out = []
        for j in jobs:
            p, c = self.score_ids(j)
            ids = p + c
            self._sync_axis()
            self.steer(0.0)
            try:
                logits, h = self.model.prefill(ids, self._scratch, read=True, logits_from=len(p) - 1)
            finally:
                self.model.seq_rm(self._scratch)
            lp = torch.log_softmax(torch.from_numpy(np.stack(logits[:-1])), dim=-1)
            targets = torch.tensor(c)[:, None]
            assert h is not None
            out.append(Scored(values=self.values_of(h[len(p):]).tolist() if self.axis is not None else [],
                              logprobs=lp.gather(1, targets)[:, 0].tolist(), token_ids=c,
                              layer=self.axis.layer if self.axis is not None else None))
        return out

    def _measure_norm(self, layer: int) -> float:
        self._sync_axis()
        if layer - 1 != self.block:  # the worker measures the axis layer only
            raise ValueError(f"this backend reads layer {self.block + 1}, not {layer}")
        self.steer(0.0)
        norms = []
        for text in NORM_TEXTS:
            try:
                _, h = self.model.prefill(self._encode(text), self._scratch, read=True)
            finally:
                self.model.seq_rm(self._scratch)
            assert h is not None
            norms.append(np.linalg.norm(h[1:], axis=-1))  # position 0 is an outlier: excluded
        return float(np.concatenate(norms).mean())

    def close(self) -> None:
        super().close()
        self.model.close()


def _gguf_shape(path: Path) -> tuple[int, int]:
    """``(blocks, hidden size)`` from a GGUF's header (read before llama.cpp loads it, to check an axis)."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
        return tuple(int(reader.fields[f"{arch}.{key}"].parts[-1][0])  # type: ignore[return-value]
                     for key in ("block_count", "embedding_length"))
    except (KeyError, ValueError, OSError) as exc:
        raise LlamaBackendError(f"{path} is not a GGUF model file llama.cpp can run ({exc})") from None


def load_llama_backend(model: str, *, axis: str | None = "default", max_batch: int = 8,
                       keep_rows: bool = True) -> LlamaBackend:
    """A :class:`LlamaBackend` for an embedded name (its GGUF assembled once into the cache) or a ``.gguf`` file,
    with its axis as :func:`valueagent.runtime.backend.load_backend` reads ``axis``."""
    from transformers import AutoTokenizer

    from valueagent.runtime import embedded

    llama_cpp()  # a missing or wrong llama-cpp-python fails here, before anything is assembled
    if model in embedded.SOURCES:
        source = embedded.SOURCES[model]
        folder = embedded.ensure_gguf(source)
        gguf, model_id, revision = folder / embedded.GGUF_NAME, source.model_id, source.sha256
        tokenizer = AutoTokenizer.from_pretrained(folder)
        weights = f"{source.weights} GGUF, llama.cpp kernels"
    else:
        gguf = Path(model).expanduser()
        if not gguf.is_file():
            raise LlamaBackendError(f"--model {model}: no such GGUF file")
        model_id, revision, weights = str(gguf.resolve()), None, "GGUF, llama.cpp kernels"
        # A tokenizer saved beside the file (as for the embedded models) is used as is; else transformers reads
        # the GGUF's own vocabulary.
        tokenizer = (AutoTokenizer.from_pretrained(gguf.parent) if (gguf.parent / "tokenizer_config.json").is_file()
                     else AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name))
    axis_obj, axis_name = resolve_axis(model_id, axis)
    return LlamaBackend(gguf, tokenizer, model_id=model_id, revision=revision, axis=axis_obj, axis_name=axis_name,
                        max_batch=max_batch, kept=max_batch if keep_rows else 0, weights=weights)
