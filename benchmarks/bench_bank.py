"""Sample-bank benchmark: N fresh samples of one prompt as one batch sharing its prefill against the same N
samples one at a time (tokens per second, ratio from one run, medians of interleaved repeats), and the
wall time of replaying every policy over a committed bank.

Usage: python benchmarks/bench_bank.py [--model embedded] [--quantize int8] [--samples 8] [--tokens 64]
       [--repeats 3] [--bank evals/bank/qwen2.5-coder-0.5b-int8] [--out benchmarks/results/bank.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from valueagent.agent.prompts import PromptConfig, task_messages
from valueagent.cli.common import load_backend_or_fail
from valueagent.runtime.generation import GenerationRequest
from valueagent.tasks import humaneval_split


def requests(n: int, tokens: int) -> list[GenerationRequest]:
    task = humaneval_split("eval")[0]
    msgs = tuple(task_messages(task.public().to_dict(), PromptConfig()))  # type: ignore[arg-type]
    # ignore_eos: every sample writes exactly `tokens` tokens, so both ways generate the same amount
    return [GenerationRequest(messages=msgs, assistant_prefix="```python\n", max_new_tokens=tokens,
                              temperature=0.8, top_p=0.95, seed=j, ignore_eos=True, hidden_mean=True)
            for j in range(1, n + 1)]


async def batched(backend: Any, reqs: list[GenerationRequest]) -> float:
    start = time.perf_counter()
    gens = await asyncio.gather(*(backend.generate(r) for r in reqs))
    return sum(g.n_tokens for g in gens) / (time.perf_counter() - start)


async def sequential(backend: Any, reqs: list[GenerationRequest]) -> float:
    start = time.perf_counter()
    total = 0
    for r in reqs:
        total += (await backend.generate(r)).n_tokens
    return total / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="embedded")
    p.add_argument("--quantize", default=None)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bank", type=Path, default=Path("evals/bank/qwen2.5-coder-0.5b-int8"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/bank.json"))
    a = p.parse_args()
    backend = load_backend_or_fail(a.model, "default", None, None, max_batch=a.samples, quantize=a.quantize)
    # prefix reuse off: the sequential samples must prefill their prompt as the batch's first row does
    backend.prefixes = None
    reqs = requests(a.samples, a.tokens)
    asyncio.run(batched(backend, reqs[:2]))  # warm-up
    rows: list[dict[str, float]] = []
    for i in range(a.repeats):
        b = asyncio.run(batched(backend, reqs))
        s = asyncio.run(sequential(backend, reqs))
        rows.append({"batched_tok_s": b, "sequential_tok_s": s, "ratio": b / s})
        print(f"repeat {i + 1}: batched {b:.1f} tok/s, sequential {s:.1f} tok/s, x{b / s:.2f}", file=sys.stderr)
    info = backend.info()
    backend.close()
    report: dict[str, Any] = {
        "model": info.model_id, "quantization": info.quantization, "dtype": info.dtype,
        "samples": a.samples, "tokens_per_sample": a.tokens, "repeats": rows,
        "median_ratio": statistics.median(r["ratio"] for r in rows),
        "median_batched_tok_s": statistics.median(r["batched_tok_s"] for r in rows),
        "median_sequential_tok_s": statistics.median(r["sequential_tok_s"] for r in rows),
    }
    if (a.bank / "bank.json").is_file():
        from valueagent.bank.replay import replay
        from valueagent.bank.store import load_bank

        start = time.perf_counter()
        bank = load_bank(a.bank)
        loaded = time.perf_counter() - start
        result = replay(bank)
        report["replay"] = {"bank": str(a.bank), "tasks": len(bank), "load_s": round(loaded, 2),
                            "replay_s": result["replay_s"], "policies": len(result["policies"]),
                            "frontier_points": len(result["frontier"])}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
