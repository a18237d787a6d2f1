"""Thread benchmark (not a timed test): a decode step run by a worker thread, with and without the loading
thread's OpenMP pool released, against the same step run by the loading thread itself; ratios from one run.

The backend decodes in its own worker thread while the model was loaded (and its OpenMP pool created) in
the main thread. Three settings, each timed over ``--steps`` decode steps at batch 1 and 4:

- ``main``: the loading thread decodes (no second pool exists);
- ``worker``: a new thread decodes while the loading thread's pool is kept (what the backend did before
  :func:`valueagent.runtime.cpu_kernels.release_openmp_pool`);
- ``worker_released``: a new thread decodes after the loading thread's pool was released (what the
  backend does now).

Usage: python benchmarks/bench_threads.py [--model embedded] [--quantize int8] [--steps 20] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

from valueagent.runtime.cpu_kernels import release_openmp_pool
from valueagent.runtime.loading import load_model


def decode_steps(model: Any, batch: int, steps: int, context: int = 300) -> float:
    """Median seconds of one decode step over a ``context``-token prompt."""
    ids = torch.randint(1000, 5000, (batch, context))
    nxt = torch.randint(1000, 5000, (batch, 1))
    times = []
    with torch.inference_mode():
        cache = model(input_ids=ids, use_cache=True, logits_to_keep=1).past_key_values
        for i in range(steps + 2):
            t = time.perf_counter()
            cache = model(input_ids=nxt, past_key_values=cache, use_cache=True, logits_to_keep=1).past_key_values
            if i >= 2:  # two warm-up steps
                times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(model: Any, steps: int) -> dict[str, float]:
    return {str(b): round(decode_steps(model, b, steps), 4) for b in (1, 4)}


def in_thread(model: Any, steps: int) -> dict[str, float]:
    out: dict[str, dict[str, float]] = {}
    worker = threading.Thread(target=lambda: out.setdefault("r", measure(model, steps)))
    worker.start()
    worker.join()
    return out["r"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded")
    p.add_argument("--quantize", default=None, choices=["int8"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2, help="Repeat the three settings, alternating.")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/threads.json"))
    a = p.parse_args()
    loaded = load_model(a.model, quantize=a.quantize)
    model = loaded.model
    runs: dict[str, list[dict[str, float]]] = {"main": [], "worker": [], "worker_released": []}
    for r in range(a.rounds):
        runs["main"].append(measure(model, a.steps))  # (re)creates the loading thread's pool
        runs["worker"].append(in_thread(model, a.steps))
        released = release_openmp_pool()
        runs["worker_released"].append(in_thread(model, a.steps))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]}" for k, v in runs.items()), file=sys.stderr)
    med = {k: {b: statistics.median(run[b] for run in v) for b in ("1", "4")} for k, v in runs.items()}
    report = {
        "model": loaded.model_id, "quantization": a.quantize, "torch_threads": torch.get_num_threads(),
        "released": released, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "median_step_s": med,
        "worker_vs_main": {b: round(med["worker"][b] / med["main"][b], 2) for b in ("1", "4")},
        "worker_released_vs_main": {b: round(med["worker_released"][b] / med["main"][b], 2) for b in ("1", "4")},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
