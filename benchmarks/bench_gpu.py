"""GPU decode benchmark: a randomly initialised Qwen3-8B-shaped model (bf16, CUDA) through valueagent's
HFBackend, with a random axis (issue 17). Random weights need no download; decode speed does not depend
on their values.

NOT YET MEASURED ON A GPU: this script was written and smoke-tested on a CPU (`--tiny`,
tests/test_bench_gpu_smoke.py) in a session without a GPU. No GPU result is committed yet; the first run
on an H100 or H200 writes benchmarks/results/gpu-<device>.json.

Measured in one run, conditions interleaved, medians over --repeats:
- value reading: backend decode tokens/s with the axis hook reading one value per token against no axis
  at all, at batch 1 and at batch 16 (target: time per token <= 1.03x);
- batching: 16 concurrent requests against 1 (aggregate decode tokens/s, with and without the reading);
- single stream against the memory-bandwidth ceiling: HBM bandwidth / bytes of weights read per token
  (every parameter but the input embedding, of which a step reads one row). A bare loop (model forward
  with KV cache and a greedy argmax on the device, no backend) beside it splits the gap between the
  model and the backend's per-step work (sampling statistics on the CPU, bookkeeping).
Decode rate = rows x (long - short) tokens / (t_long - t_short): prefill and per-request costs cancel.

Usage:
  python benchmarks/bench_gpu.py                            # Qwen3-8B shape, bf16, cuda
  python benchmarks/bench_gpu.py --bandwidth-gbs 3350       # when the device name is not recognised
  python benchmarks/bench_gpu.py --tiny --device cpu --out /tmp/gpu-tiny.json   # 2 layers: a smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from valueagent.runtime.artifact import ValueAxis
from valueagent.runtime.backend import HFBackend
from valueagent.runtime.decoding import cache_of
from valueagent.runtime.generation import GenerationRequest

# Qwen/Qwen3-8B's config.json: 36 layers, hidden 4096, 32 query / 8 key-value heads of 128, untied head.
QWEN3_8B = dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
                tie_word_embeddings=False)
TINY = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, tie_word_embeddings=False)
PAPER_LAYER = 21  # the paper's axis layer on Qwen3-8B (hidden_states index)

# Peak HBM bandwidth, GB/s, from NVIDIA's data sheets; matched against torch.cuda.get_device_name().
BANDWIDTH_GBS = (("H200", 4800.0), ("H100 PCIe", 2000.0), ("H100 NVL", 3900.0), ("H100", 3350.0))


def build_model(*, tiny: bool, device: str, dtype: torch.dtype, seed: int) -> Any:
    """A randomly initialised Qwen3 model of Qwen3-8B's shape (or 2 tiny layers), created on ``device``."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(**(TINY if tiny else QWEN3_8B))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):  # parameters are created (and initialised) there, never on the host
            model: Any = Qwen3ForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    return model.to(dtype).eval()


def build_tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer with one word per model id (``w<id>``), so any sampled id decodes."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<pad>": 1, "<eos>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>",
                                   padding_side="left")


def random_axis(model_id: str, num_layers: int, hidden: int, *, seed: int) -> ValueAxis:
    """A seeded random direction at the paper's layer (the middle for the tiny model): costs, not readings."""
    layer = PAPER_LAYER if num_layers == 36 else max(1, num_layers // 2)
    direction = np.random.default_rng(seed).standard_normal(hidden).astype(np.float32)
    return ValueAxis(direction=direction, layer=layer, model_id=model_id, hidden_size=hidden,
                     num_layers=num_layers, estimator="random (benchmark only, not a value axis)")


def prompts(n: int, length: int, vocab_size: int, *, seed: int) -> list[str]:
    """``n`` distinct random prompts of ``length`` tokens (distinct, so rows never share a prefill)."""
    rng = np.random.default_rng(seed)
    return [" ".join(f"w{t}" for t in rng.integers(3, vocab_size, size=length)) for _ in range(n)]


def timed_generate(backend: HFBackend, texts: list[str], tokens: int) -> float:
    """Seconds for ``len(texts)`` concurrent greedy requests of exactly ``tokens`` new tokens each (with one
    value per token when the backend has an axis: the reading is really done)."""
    reqs = [GenerationRequest(prompt=t, max_new_tokens=tokens, ignore_eos=True) for t in texts]
    values = tokens if backend.axis is not None else 0

    async def go() -> None:
        gens = await asyncio.gather(*(backend.generate(r) for r in reqs))
        assert all(g.n_tokens == tokens and len(g.values) == values for g in gens), [g.n_tokens for g in gens]

    t0 = time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - t0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def timed_bare(model: Any, tokenizer: Any, texts: list[str], tokens: int) -> float:
    """Seconds for the same work as :func:`timed_generate` without the backend: prefill, then ``tokens - 1``
    forward steps with KV cache and a greedy argmax on the device, one synchronisation at the end."""
    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer(t)["input_ids"] for t in texts], device=device)  # (B, T), equal lengths
    synchronize(device)
    t0 = time.perf_counter()
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
    cache = cache_of(out)
    # transformers >= 5.2x renamed `past_key_values` to `cache` (as HFBackend._forward does).
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    for _ in range(tokens - 1):
        out = model(input_ids=nxt, use_cache=True, logits_to_keep=1, **{key: cache})
        nxt, cache = out.logits[:, -1].argmax(-1, keepdim=True), cache_of(out)
    synchronize(device)
    return time.perf_counter() - t0


def decode_rate(rows: int, long: int, short: int, t_long: float, t_short: float) -> float:
    """Decode tokens/s with prefill and per-request costs cancelled (NaN if noise inverted the times)."""
    return rows * (long - short) / (t_long - t_short) if t_long > t_short else float("nan")


def bandwidth_gbs(device: torch.device, given: float | None) -> tuple[float | None, str]:
    """The HBM bandwidth to compare against and where it came from."""
    if given is not None:
        return given, "--bandwidth-gbs"
    if device.type != "cuda":
        return None, "not a CUDA device: pass --bandwidth-gbs"
    name = torch.cuda.get_device_name(device)
    for key, gbs in BANDWIDTH_GBS:
        if key in name:
            return gbs, f"data sheet of {key} (device: {name})"
    return None, f"unknown device {name!r}: pass --bandwidth-gbs"


def weight_bytes(model: Any) -> tuple[int, int]:
    """Bytes of all parameters, and of those a decode step reads (all but the input embedding table)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    emb = model.get_input_embeddings().weight
    tied = emb is model.get_output_embeddings().weight
    return total, total - (0 if tied else emb.numel() * emb.element_size())


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> dict[str, Any]:
    device = torch.device(args.device)
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[args.dtype]
    t0 = time.perf_counter()
    model = build_model(tiny=args.tiny, device=args.device, dtype=dtype, seed=args.seed)
    synchronize(device)
    build_s = time.perf_counter() - t0
    cfg = model.config
    model_id = "random-qwen3-tiny" if args.tiny else "random-qwen3-8b-shape"
    tokenizer = build_tokenizer(cfg.vocab_size)
    axis = random_axis(model_id, cfg.num_hidden_layers, cfg.hidden_size, seed=args.seed)
    backend = HFBackend(model, tokenizer, model_id=model_id, axis=axis, axis_name="random-benchmark-direction",
                        max_batch=max(args.batch, 1), prefix_cache_mb=0, weights=f"random {args.dtype}")
    progress(f"model built in {build_s:.1f} s on {device}")
    texts = prompts(args.batch, args.prompt_tokens, cfg.vocab_size, seed=args.seed)
    one, many = texts[:1], texts
    long, short = args.tokens, args.short

    def backend_run(read: bool, batch: list[str], n: int) -> float:
        backend.axis = axis if read else None
        return timed_generate(backend, batch, n)

    conditions: dict[str, Callable[[int], float]] = {
        "plain_b1": lambda n: backend_run(False, one, n),
        "read_b1": lambda n: backend_run(True, one, n),
        f"plain_b{args.batch}": lambda n: backend_run(False, many, n),
        f"read_b{args.batch}": lambda n: backend_run(True, many, n),
        "bare_b1": lambda n: timed_bare(model, tokenizer, one, n),
        f"bare_b{args.batch}": lambda n: timed_bare(model, tokenizer, many, n),
    }
    for name, fn in conditions.items():  # warm-up: kernels, allocator, cuBLAS handles
        fn(min(short, 4))
        progress(f"warm {name}")
    rates: dict[str, list[float]] = {name: [] for name in conditions}
    for r in range(args.repeats):
        for name, fn in conditions.items():
            t_short, t_long = fn(short), fn(long)
            rows = 1 if name.endswith("_b1") else args.batch
            rates[name].append(decode_rate(rows, long, short, t_long, t_short))
        progress(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()))
    backend.axis = axis
    info = backend.info()
    backend.close()

    med = {k: statistics.median(v) for k, v in rates.items()}
    b = args.batch
    total_b, step_b = weight_bytes(model)
    bw, bw_source = bandwidth_gbs(device, args.bandwidth_gbs)
    ceiling = bw * 1e9 / step_b if bw is not None else None
    return {
        "what": "decode tokens/s through HFBackend on a random Qwen3 model; ratios from one run",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "model": {"id": model_id, "config": {k: getattr(cfg, k) for k in (TINY if args.tiny else QWEN3_8B)
                                             if k != "rope_parameters"},
                  "parameters": sum(p.numel() for p in model.parameters()), "build_s": round(build_s, 2)},
        "backend": {"dtype": info.dtype, "device": info.device, "axis_layer": info.axis_layer,
                    "max_batch": backend.max_batch},
        "environment": environment(device),
        "decode_tok_s": {"median": med, "runs": rates},
        "value_reading": {
            "time_per_token_ratio_b1": med["plain_b1"] / med["read_b1"],
            f"time_per_token_ratio_b{b}": med[f"plain_b{b}"] / med[f"read_b{b}"],
            "target_max": 1.03,
        },
        "batching": {
            f"gain_b{b}_vs_b1_plain": med[f"plain_b{b}"] / med["plain_b1"],
            f"gain_b{b}_vs_b1_read": med[f"read_b{b}"] / med["read_b1"],
            f"gain_b{b}_vs_b1_bare": med[f"bare_b{b}"] / med["bare_b1"],
        },
        "bandwidth": {
            "weight_bytes": total_b, "weight_bytes_per_token": step_b, "hbm_gbs": bw, "hbm_source": bw_source,
            "ceiling_tok_s": ceiling,
            "backend_plain_b1_of_ceiling": med["plain_b1"] / ceiling if ceiling else None,
            "backend_read_b1_of_ceiling": med["read_b1"] / ceiling if ceiling else None,
            "bare_b1_of_ceiling": med["bare_b1"] / ceiling if ceiling else None,
            "backend_vs_bare_b1": med["plain_b1"] / med["bare_b1"],
        },
    }


def environment(device: torch.device) -> dict[str, Any]:
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                check=False).stdout.strip() or None
    except OSError:
        commit = None
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "cuda": torch.version.cuda, "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine(), "git_commit": commit}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="2 layers, hidden 64: runs anywhere (a smoke test)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:1, cpu (default: cuda)")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    p.add_argument("--batch", type=int, default=16, help="concurrent requests against 1 (default: 16)")
    p.add_argument("--tokens", type=int, default=256, help="new tokens of the long run (default: 256)")
    p.add_argument("--short", type=int, default=32, help="new tokens of the short run (default: 32)")
    p.add_argument("--prompt-tokens", type=int, default=128, help="prompt length (default: 128)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bandwidth-gbs", type=float, default=None,
                   help="HBM bandwidth in GB/s (default from the device name: H100 SXM 3350, H100 PCIe 2000, "
                   "H100 NVL 3900, H200 4800)")
    p.add_argument("--out", type=Path, default=None, help="JSON result (default: benchmarks/results/gpu-<device>.json)")
    a = p.parse_args(argv)
    if not 1 <= a.short < a.tokens:
        p.error("need 1 <= --short < --tokens")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("no CUDA device here: run on a GPU machine, or --tiny --device cpu for a smoke test")
    report = run(a, lambda m: print(m, file=sys.stderr, flush=True))
    out = a.out or Path("benchmarks/results") / f"gpu-{slug(report['environment']['device_name'], a.tiny)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("value_reading", "batching", "bandwidth")}, indent=2))


def slug(device_name: str, tiny: bool) -> str:
    name = "-".join(w for w in device_name.lower().replace("nvidia", "").split() if w)
    return f"{'tiny-' if tiny else ''}{name or 'device'}"


if __name__ == "__main__":
    main()
