"""Decode-throughput benchmark of a backend: hook overhead and batching gain, measured in one run.

Conditions are interleaved and repeated so machine noise hits all of them alike; medians and their
ratios are reported (absolute tokens/s on a shared CPU are not comparable across runs).
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from valueagent.runtime.backend import HFBackend
from valueagent.runtime.generation import GenerationRequest

_PROMPTS = (
    "Write a Python function that returns the n-th Fibonacci number, with a docstring.",
    "Write a Python function that checks whether a string is a palindrome, ignoring case.",
    "Write a Python function that merges two sorted lists into one sorted list.",
    "Write a Python function that counts the words in a text file.",
)


def _req(i: int, tokens: int, steer: float = 0.0) -> GenerationRequest:
    return GenerationRequest(
        messages=({"role": "user", "content": _PROMPTS[i % len(_PROMPTS)]},),
        max_new_tokens=tokens,
        ignore_eos=True,
        steer=steer,
    )


def _timed_single(backend: HFBackend, tokens: int, steer: float = 0.0) -> float:
    t0 = time.perf_counter()
    gen = backend.generate_sync(_req(0, tokens, steer))
    return gen.n_tokens / (time.perf_counter() - t0)


def _timed_concurrent(backend: HFBackend, tokens: int, n: int) -> float:
    async def go() -> int:
        gens = await asyncio.gather(*(backend.generate(_req(i, tokens)) for i in range(n)))
        return sum(g.n_tokens for g in gens)

    t0 = time.perf_counter()
    total = asyncio.run(go())
    return total / (time.perf_counter() - t0)


def _timed_sequential(backend: HFBackend, tokens: int, n: int) -> float:
    t0 = time.perf_counter()
    total = sum(backend.generate_sync(_req(i, tokens)).n_tokens for i in range(n))
    return total / (time.perf_counter() - t0)


def run_bench(
    backend: HFBackend, *, tokens: int = 64, repeats: int = 3, progress: Callable[[str], None] = lambda m: None
) -> dict[str, Any]:
    """Measure decode tokens/s plain, reading, reading+steering, and 1 vs 4 concurrent requests."""
    import torch

    axis = backend.axis
    if axis is None:
        raise ValueError("the benchmark needs an axis (a random one is fine) to measure hook costs")
    _ = backend.residual_norm  # measure once, outside the timings
    _timed_single(backend, 8)  # warm-up
    runs: dict[str, list[float]] = {"plain": [], "read": [], "read_steer": [], "seq4": [], "conc4": []}
    for r in range(repeats):
        progress(f"repeat {r + 1}/{repeats}")
        backend.axis = None
        runs["plain"].append(_timed_single(backend, tokens))
        backend.axis = axis
        runs["read"].append(_timed_single(backend, tokens))
        runs["read_steer"].append(_timed_single(backend, tokens, steer=0.1))
        runs["seq4"].append(_timed_sequential(backend, tokens, 4))
        runs["conc4"].append(_timed_concurrent(backend, tokens, 4))
    med = {k: statistics.median(v) for k, v in runs.items()}
    info = backend.info()
    return {
        "model_id": info.model_id,
        "dtype": info.dtype,
        "quantization": info.quantization,
        "device": info.device,
        "axis": backend.axis_name,
        "layer": axis.layer,
        "tokens_per_request": tokens,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "plain_tok_s": round(med["plain"], 2),
        "read_tok_s": round(med["read"], 2),
        "read_steer_tok_s": round(med["read_steer"], 2),
        "sequential_4_tok_s": round(med["seq4"], 2),
        "concurrent_4_tok_s": round(med["conc4"], 2),
        "read_slowdown_ratio": round(med["plain"] / med["read"], 3),
        "read_steer_slowdown_ratio": round(med["plain"] / med["read_steer"], 3),
        "concurrency_4_speedup": round(med["conc4"] / med["seq4"], 3),
        "raw": {k: [round(x, 2) for x in v] for k, v in runs.items()},
    }
