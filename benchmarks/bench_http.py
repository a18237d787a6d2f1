"""HTTP against in-process: per-token cost of the same requests through `valueagent serve` and through the
backend directly, at 1 and at 16 concurrent clients, as ratios measured in one run (not a timed test).

Both paths drive ONE backend object (same weights, same worker, same batching): the server runs in a
thread of this process on a loopback port, so the HTTP path pays JSON, HTTP and the event loops, and its
client shares this process's CPU with the worker (a conservative setting on a small CPU).

Usage: python benchmarks/bench_http.py [--model tiny|embedded|...] [--tokens 48] [--clients 1,16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `--model tiny` borrows the tests' builders

from valueagent.runtime.generation import Generation, GenerationRequest  # noqa: E402

PROMPT = "Write a Python function that returns the n-th Fibonacci number."


def load(model: str, axis: str, max_batch: int) -> Any:
    if model == "tiny":
        import numpy as np

        from tests.conftest import build_tiny_qwen3, build_tiny_tokenizer
        from valueagent.runtime.artifact import ValueAxis
        from valueagent.runtime.backend import HFBackend

        m = build_tiny_qwen3()
        h = m.config.hidden_size
        direction = np.random.default_rng(0).standard_normal(h).astype(np.float32)
        ax = ValueAxis(direction=direction, layer=1, model_id="tiny", hidden_size=h,
                       num_layers=m.config.num_hidden_layers, estimator="random (benchmark only)")
        return HFBackend(m, build_tiny_tokenizer(), model_id="tiny", axis=ax, axis_name="random", max_batch=max_batch)
    from valueagent.cli.common import load_backend_or_fail

    return load_backend_or_fail(model, axis, None, None, random_axis_ok=True, max_batch=max_batch)


def requests(n: int, tokens: int, offset: int) -> list[GenerationRequest]:
    # Distinct seeds and sampled decoding: every request is its own row; ignore_eos fixes the length.
    return [GenerationRequest(messages=({"role": "user", "content": PROMPT},), max_new_tokens=tokens,
                              temperature=0.8, seed=offset + i, ignore_eos=True) for i in range(n)]


async def timed(backend: Any, reqs: list[GenerationRequest]) -> tuple[float, list[Generation]]:
    t0 = time.perf_counter()
    gens = await asyncio.gather(*(backend.generate(r) for r in reqs))
    return time.perf_counter() - t0, list(gens)


async def measure(local: Any, remote: Any, *, clients: list[int], tokens: int, repeats: int) -> dict[str, Any]:
    await timed(local, requests(2, 4, 10_000))  # warm-up: the worker, the pools, the connection
    await timed(remote, requests(2, 4, 10_000))
    out: dict[str, Any] = {}
    for c in clients:
        per_token: dict[str, list[float]] = {"in_process": [], "http": []}
        same = True
        for rep in range(repeats):
            reqs = requests(c, tokens, 1000 * rep)
            order = [("in_process", local), ("http", remote)]
            results: dict[str, list[Generation]] = {}
            for name, backend in order if rep % 2 == 0 else order[::-1]:  # alternate to cancel drift
                wall, gens = await timed(backend, reqs)
                per_token[name].append(wall / sum(g.n_tokens for g in gens))
                results[name] = gens
            same &= [g.token_ids for g in results["http"]] == [g.token_ids for g in results["in_process"]]
        med = {k: statistics.median(v) for k, v in per_token.items()}
        out[str(c)] = {"ms_per_token": {k: round(v * 1e3, 4) for k, v in med.items()},
                       "http_over_in_process": round(med["http"] / med["in_process"], 4),
                       "same_tokens": same, "samples_ms": {k: [round(x * 1e3, 4) for x in v]
                                                           for k, v in per_token.items()}}
    lo, hi = str(min(clients)), str(max(clients))
    if lo != hi:
        gains = {k: out[lo]["ms_per_token"][k] / out[hi]["ms_per_token"][k] for k in ("in_process", "http")}
        out["batching_gain"] = {f"{k}_{hi}_over_{lo}": round(v, 3) for k, v in gains.items()}
        out["batching_gain"]["http_share_of_in_process_gain"] = round(gains["http"] / gains["in_process"], 3)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="tiny", help="tiny (random 2-layer Qwen3), embedded, or any model spec")
    p.add_argument("--axis", default="default")
    p.add_argument("--tokens", type=int, default=48)
    p.add_argument("--clients", default="1,16")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/http-<model>.json")
    a = p.parse_args()
    clients = [int(x) for x in a.clients.split(",")]

    import torch

    from valueagent import __version__
    from valueagent.runtime.http import HTTPBackend
    from valueagent.serve.app import create_app
    from valueagent.serve.launch import running

    local = load(a.model, a.axis, max_batch=max(clients))
    try:
        with running(create_app(local)) as url:
            remote = HTTPBackend(url, max_connections=max(clients))
            results = asyncio.run(measure(local, remote, clients=clients, tokens=a.tokens, repeats=a.repeats))
            remote.close()
        info = local.info()
    finally:
        local.close()
    report = {
        "benchmark": "http_vs_in_process",
        "config": {"model": a.model, "tokens": a.tokens, "clients": clients, "repeats": a.repeats,
                   "max_batch": max(clients), "sampling": "temperature 0.8, distinct seeds, ignore_eos"},
        "model": {"model_id": info.model_id, "dtype": info.dtype, "device": info.device, "axis": info.axis},
        "versions": {"valueagent": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform()},
        "results": results,
    }
    out = a.out or Path(f"benchmarks/results/http-{a.model.replace('/', '--')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
