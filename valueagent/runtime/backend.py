"""The transformers backend, and the registry that picks a backend for a model spec.

The worker thread and its batching are :class:`valueagent.runtime.worker.BatchingBackend`'s.

Every generated token gets its value from the same forward pass that processes it: a hook at the
axis layer reads ``cos(h, d)`` while the KV-cached decode runs (no second pass). Steering is per
batch row, so requests with different steering strengths share forward passes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from valueagent.runtime.artifact import ValueAxis, resolve_axis
from valueagent.runtime.cpu_kernels import release_openmp_pool
from valueagent.runtime.decoding import DecodeBatch, PrefixStore, left_pad
from valueagent.runtime.generation import ModelInfo, Scored, ValueBackend
from valueagent.runtime.hooks import AxisHook, attached
from valueagent.runtime.layers import num_layers
from valueagent.runtime.worker import NORM_TEXTS, BatchingBackend, Job, eos_ids, steer_alpha

__all__ = ["HFBackend", "load_backend", "register_backend", "scheme_of", "steer_alpha"]


class HFBackend(BatchingBackend):
    """A :class:`~valueagent.runtime.generation.ValueBackend` over a transformers causal LM.

    ``axis`` may be None: generation then works and ``values`` stay empty; steering needs an axis.
    ``prefix_cache_mb`` bounds the keys and values kept for prefix reuse (0 turns reuse off): a prompt
    that extends an earlier unsteered request's prompt and output prefills only its new tokens.
    """

    backend_name = "transformers"

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
        super().__init__(
            tokenizer, model_id=model_id, revision=revision, axis=axis, axis_name=axis_name, max_batch=max_batch,
            batch_window_s=batch_window_s, prefixes=PrefixStore(prefix_cache_mb << 20) if prefix_cache_mb > 0 else None,
            quantization=quantization, weights=weights, num_layers=num_layers(model),
            hidden=int(model.config.hidden_size), eos=eos_ids(tokenizer, getattr(model, "generation_config", None)))
        self._device = next(model.parameters()).device
        self._cache_kw_is_cache = "cache" in inspect.signature(model.forward).parameters

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

    def _release_caller_pool(self) -> None:
        """The worker will run every forward pass: free the OpenMP pool of the thread that loaded the
        model or starts the worker, so the worker's pool is the process's only one (see
        :func:`valueagent.runtime.cpu_kernels.release_openmp_pool`: two pools on a 2-core CPU made decode steps
        1.6x slower)."""
        if self._device.type == "cpu":
            release_openmp_pool()

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

    def _hook(self) -> AxisHook | None:
        if self.axis is None:
            return None
        return AxisHook(torch.from_numpy(np.asarray(self.axis.direction, dtype=np.float32)), read=self.read_values,
                        linear=self.axis.reading == "linear", bias=self.axis.bias)

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
    def _run_score(self, jobs: list[Job]) -> list[Scored]:
        rows, starts = [], []
        for j in jobs:
            p, c = self.score_ids(j)
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
        for text in NORM_TEXTS:
            ids = torch.tensor([self._encode(text)], device=self._device)
            hs = self.model(input_ids=ids, output_hidden_states=True).hidden_states[layer]
            norms.append(hs[0, 1:].float().norm(dim=-1))  # position 0 is an outlier: excluded
        return float(torch.cat(norms).mean())


BackendLoader = Callable[..., ValueBackend]
"""``loader(spec, *, axis, device, dtype, max_batch, quantize, prefix_cache_mb, backend) -> ValueBackend``."""
BACKEND_ENTRY_POINTS = "valueagent.backends"
_SCHEMES: dict[str, BackendLoader] = {}
ENGINES = ("auto", "llama", "hf")
"""``--backend``: ``llama`` (llama.cpp over the GGUF: the embedded models and ``.gguf`` files), ``hf``
(transformers), ``auto`` (llama.cpp where it can serve the model as asked, else transformers)."""


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


def resolve_engine(model: str, backend: str = "auto", *, quantize: str | None = None, device: str | None = None,
                   dtype: str | None = None) -> str:
    """``"llama"`` or ``"hf"``: the engine a local model spec runs on, or a one-line error naming the fix.
    Needs no model: the CLI checks it before anything loads."""
    if backend not in ENGINES:
        raise ValueError(f"--backend {backend}: unknown engine (choose {', '.join(ENGINES)})")
    from valueagent.runtime.embedded import SOURCES

    gguf = model in SOURCES or model.lower().endswith(".gguf")
    on_cpu = device in (None, "cpu")
    if backend == "llama":
        if not gguf:
            raise ValueError(f"--backend llama runs GGUF files; --model {model} is not one: give an embedded name "
                             "or a .gguf path, or pass --backend hf")
        if quantize is not None:
            raise ValueError("--quantize applies to the transformers path (llama.cpp runs the GGUF's own quantized "
                             "kernels): drop --quantize, or pass --backend hf")
        if dtype is not None or not on_cpu:
            raise ValueError("--dtype and --device apply to the transformers path (the llama.cpp backend runs on "
                             "the CPU with its GGUF kernels): drop them, or pass --backend hf")
        return "llama"
    if backend == "hf":
        if model.lower().endswith(".gguf"):
            raise ValueError(f"--model {model} is a GGUF file, which the transformers path does not load: pass "
                             "--backend llama (or a transformers model directory)")
        return "hf"
    return "llama" if gguf and quantize is None and dtype is None and on_cpu else "hf"


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
    backend: str = "auto",
) -> ValueBackend:
    """Load a model by spec and its value axis, through the backend registered for the spec's scheme
    (:func:`register_backend`): ``local`` (an embedded name, a ``.gguf`` file, a model id or folder) or
    ``http``/``https`` (a ``valueagent serve`` server: :class:`valueagent.runtime.http.HTTPBackend`, whose
    model, axis, dtype and prefix cache apply). A local spec runs on the engine :func:`resolve_engine` picks
    from ``backend``: :class:`valueagent.runtime.llama.LlamaBackend` or :class:`HFBackend`. ``axis``:
    ``"default"`` (the shipped axis for this model, or none if there is none), a path to an axis artifact, or
    None. ``quantize``: ``"int8"`` to decode through int8 linear layers on a CPU (transformers only,
    :func:`valueagent.runtime.loading.load_model`). ``prefix_cache_mb``: see :class:`HFBackend` (llama.cpp
    keeps finished rows in its KV cache instead; 0 turns reuse off there too). An unknown scheme is an error
    naming the known ones."""
    loader = _loader(scheme_of(model), model)
    return loader(model, axis=axis, device=device, dtype=dtype, max_batch=max_batch, quantize=quantize,
                  prefix_cache_mb=prefix_cache_mb, backend=backend)


def _http_backend(model: str, *, axis: str | None, device: str | None, dtype: str | None, max_batch: int,
                  quantize: str | None, prefix_cache_mb: int, backend: str = "auto") -> ValueBackend:
    from valueagent.runtime.http import connect_backend

    if backend != "auto":
        raise ValueError(f"--backend {backend} applies to local models; the server at {model} runs its own "
                         "(`valueagent model info --model {model}` names it)")
    return connect_backend(model, axis=axis, device=device, dtype=dtype, quantize=quantize)


def _local_backend(model: str, *, axis: str | None, device: str | None, dtype: str | None, max_batch: int,
                   quantize: str | None, prefix_cache_mb: int, backend: str = "auto") -> ValueBackend:
    if resolve_engine(model, backend, quantize=quantize, device=device, dtype=dtype) == "llama":
        from valueagent.runtime.llama import load_llama_backend

        return load_llama_backend(model, axis=axis, max_batch=max_batch, keep_rows=prefix_cache_mb > 0)
    from valueagent.runtime.loading import load_model

    loaded = load_model(model, device=device, dtype=dtype, quantize=quantize)
    axis_obj, axis_name = resolve_axis(loaded.model_id, axis)
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
