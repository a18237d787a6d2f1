"""The llama.cpp backend against plain llama.cpp and the transformers paths, from one run (not a timed test).

Every row runs in its own process pinned with ``taskset`` to 1 core or 2 cores, on the same GGUF (the embedded
model's), the same chat prompt and 128 greedy tokens (``ignore_eos``), single stream, best of ``--repeats``:

- ``llama.cpp, no reading``: a bare ``llama_decode`` loop with greedy argmax over llama-cpp-python's low-level API
  (no evaluation callback): what a CPU user gets from llama.cpp itself;
- ``valueagent llama.cpp, reading``: :class:`valueagent.runtime.llama.LlamaBackend` (value read per token by
  the compiled callback, log-prob/entropy/top-k from the logits, the project's sampler and bookkeeping);
- ``valueagent float32`` and ``valueagent --quantize int8``: the transformers paths, reading the value.

Then the bank's batch: 8 seeded samples of one prompt decoded together against the same 8 one after another
(tokens/s of each, same engine), on the llama.cpp backend and on the int8 transformers path the banks used so
far; and the peak resident memory of one process serving ``embedded-1.5b`` on llama.cpp.

Ratios are within this run. The machine is shared: stop other jobs (or ``kill -STOP`` them) while it runs.

Usage: python benchmarks/bench_llama.py [--tokens 128] [--repeats 3] [--out benchmarks/results/llama.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROMPT = ({"role": "user", "content": "Write a Python function that returns the n-th prime number, with a "
                                      "docstring and a few comments, and explain how it works."},)
ENGINES = ("llama-raw", "llama", "hf-float32", "hf-int8")
LABELS = {"llama-raw": "llama.cpp (llama-cpp-python 0.3.36), no reading",
          "llama": "valueagent llama.cpp backend, reading the value",
          "hf-float32": "valueagent transformers float32, reading the value",
          "hf-int8": "valueagent transformers `--quantize int8`, reading the value"}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- children: one engine, one core set --------------------------------------------------------------------------
def _backend(engine: str, model: str, max_batch: int) -> Any:
    from valueagent.runtime.backend import load_backend

    if engine == "llama":
        return load_backend(model, backend="llama", max_batch=max_batch)
    return load_backend(model, backend="hf", max_batch=max_batch, prefix_cache_mb=0,
                        quantize="int8" if engine == "hf-int8" else None, dtype="float32", device="cpu")


def _raw_stream(model: str, tokens: int, repeats: int) -> tuple[list[float], float]:
    """tok/s of a bare greedy llama_decode loop (no callback, no sampler but argmax), one stream and 8."""
    import numpy as np
    from transformers import AutoTokenizer

    from valueagent.runtime import embedded
    from valueagent.runtime.llama import llama_cpp
    from valueagent.runtime.loading import render_chat

    lib = llama_cpp()
    folder = embedded.ensure_gguf(embedded.SOURCES[model])
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok(render_chat(tok, list(PROMPT)), add_special_tokens=False)["input_ids"]
    lib.llama_backend_init()
    m = lib.llama_model_load_from_file(str(folder / embedded.GGUF_NAME).encode(), lib.llama_model_default_params())
    cp = lib.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max, cp.kv_unified = 4096, 256, 256, 8, True
    cp.n_threads = cp.n_threads_batch = len(os.sched_getaffinity(0))
    ctx = lib.llama_init_from_model(m, cp)
    n_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(m))
    batch = lib.llama_batch_init(512, 0, 1)
    mem = lib.llama_get_memory(ctx)

    def put(toks: list[int], start: int) -> None:
        for i, t in enumerate(toks):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = t, start + i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i == len(toks) - 1
        batch.n_tokens = len(toks)
        assert lib.llama_decode(ctx, batch) == 0

    rates = []
    for _ in range(repeats + 1):  # the first is a warm-up
        lib.llama_memory_clear(mem, True)
        put(ids, 0)
        t0 = time.perf_counter()
        for k in range(tokens):
            logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
            put([int(logits.argmax())], len(ids) + k)
        rates.append(tokens / (time.perf_counter() - t0))
    # The engine's own batch of 8: the prompt once, copied to 8 sequences, then 8 tokens a call (greedy per row,
    # each row offset by its index so the rows differ).
    lib.llama_memory_clear(mem, True)
    put(ids, 0)
    for s in range(1, 8):
        lib.llama_memory_seq_cp(mem, 0, s, -1, -1)
    nxt = [int(np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).argmax()) + s
           for s in range(8)]
    t0 = time.perf_counter()
    for k in range(tokens):
        for s, t in enumerate(nxt):
            batch.token[s], batch.pos[s], batch.n_seq_id[s], batch.logits[s] = t, len(ids) + k, 1, True
            batch.seq_id[s][0] = s
        batch.n_tokens = 8
        assert lib.llama_decode(ctx, batch) == 0
        nxt = [int(np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, s), shape=(n_vocab,)).argmax())
               for s in range(8)]
    batch_rate = 8 * tokens / (time.perf_counter() - t0)
    return rates[1:], batch_rate


def child(engine: str, model: str, tokens: int, repeats: int, batch: int) -> dict[str, Any]:
    from valueagent.runtime.generation import GenerationRequest

    out: dict[str, Any] = {"engine": engine, "cores": len(os.sched_getaffinity(0)), "model": model}
    if engine == "llama-raw":
        out["stream_tok_s"], out["batch_tok_s"] = _raw_stream(model, tokens, repeats)
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out
    backend = _backend(engine, model, max(8, batch))
    greedy = GenerationRequest(messages=PROMPT, max_new_tokens=tokens, ignore_eos=True)
    backend.generate_sync(GenerationRequest(messages=PROMPT, max_new_tokens=8))  # warm-up (and the norm)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        g = backend.generate_sync(greedy)
        rates.append(g.n_tokens / (time.perf_counter() - t0))
        assert len(g.values) == g.n_tokens, "the value was not read"
    out["stream_tok_s"] = rates
    if batch:
        import asyncio

        reqs = [GenerationRequest(messages=PROMPT, max_new_tokens=tokens, ignore_eos=True, temperature=0.8,
                                  top_p=0.95, seed=s) for s in range(batch)]

        async def together() -> list[Any]:
            return await asyncio.gather(*(backend.generate(r) for r in reqs))

        t0 = time.perf_counter()
        gens = asyncio.run(together())
        out["batch_tok_s"] = sum(g.n_tokens for g in gens) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        n = sum(backend.generate_sync(r).n_tokens for r in reqs)
        out["sequential_tok_s"] = n / (time.perf_counter() - t0)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["info"] = {k: v for k, v in vars(backend.info()).items() if k in ("backend", "weights", "dtype",
                                                                          "quantization")}
    backend.close()
    return out


# -- parent ----------------------------------------------------------------------------------------------------
def _run_child(engine: str, cores: str, args: argparse.Namespace, model: str = "embedded", batch: int = 0) -> Any:
    cmd = ["taskset", "-c", cores, sys.executable, __file__, "--child", engine, "--model", model,
           "--tokens", str(args.tokens), "--repeats", str(args.repeats), "--batch", str(batch)]
    env = dict(os.environ, OMP_NUM_THREADS=str(len(cores.split(","))))
    _say(f"{engine} on cores {cores} ({model}{f', batch {batch}' if batch else ''})")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/llama.json"))
    ap.add_argument("--child", choices=ENGINES)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--skip-1p5b", action="store_true", help="leave out the embedded-1.5b memory row")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.tokens, args.repeats, args.batch)))
        return
    rows: dict[str, Any] = {}
    for engine in ENGINES:
        for cores in ("0", "0,1"):
            r = _run_child(engine, cores, args, batch=8 if cores == "0,1" and engine in ("llama", "hf-int8") else 0)
            rows.setdefault(engine, {})[cores] = r
    if not args.skip_1p5b:
        rows["llama-1.5b"] = {"0,1": _run_child("llama", "0,1", args, model="embedded-1.5b")}
    best = {e: {c: max(r["stream_tok_s"]) for c, r in by.items()} for e, by in rows.items() if e in ENGINES}
    raw = best["llama-raw"]
    result = {
        "tokens": args.tokens, "repeats": args.repeats, "prompt": PROMPT[0]["content"],
        "cpu": _cpu(), "rows": rows,
        "table": [{"engine": LABELS[e], "tok_s_1core": round(best[e]["0"], 1), "tok_s_2cores": round(best[e]["0,1"], 1),
                   "vs_llama_cpp_1core": round(best[e]["0"] / raw["0"], 3),
                   "vs_llama_cpp_2cores": round(best[e]["0,1"] / raw["0,1"], 3)} for e in ENGINES],
        "llama_vs_int8": {c: round(best["llama"][c] / best["hf-int8"][c], 2) for c in ("0", "0,1")},
        "llama_vs_float32": {c: round(best["llama"][c] / best["hf-float32"][c], 2) for c in ("0", "0,1")},
        "batch8": {e: {"batch_tok_s": round(rows[e]["0,1"]["batch_tok_s"], 1),
                       "sequential_tok_s": round(rows[e]["0,1"]["sequential_tok_s"], 1),
                       "ratio": round(rows[e]["0,1"]["batch_tok_s"] / rows[e]["0,1"]["sequential_tok_s"], 2)}
                   for e in ("llama", "hf-int8")},
    }
    result["batch8"]["llama_vs_int8_bank"] = round(result["batch8"]["llama"]["batch_tok_s"]
                                                   / result["batch8"]["hf-int8"]["batch_tok_s"], 2)
    raw8 = rows["llama-raw"]["0,1"]["batch_tok_s"]
    result["batch8"]["llama_cpp_own"] = {"batch_tok_s": round(raw8, 1),
                                         "ratio_to_its_stream": round(raw8 / raw["0,1"], 2)}
    if "llama-1.5b" in rows:
        result["peak_rss_mb_1p5b_llama"] = round(rows["llama-1.5b"]["0,1"]["peak_rss_mb"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(_markdown(result))


def _cpu() -> str:
    try:
        line = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name"))
        return line.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return "unknown"


def _markdown(r: dict[str, Any]) -> str:
    lines = [f"{r['tokens']} greedy tokens, single stream, best of {r['repeats']}, {r['cpu']}", "",
             "| engine | 1 core tok/s | 2 cores tok/s | vs llama.cpp (1 / 2 cores) |", "|---|---|---|---|"]
    lines += [f"| {t['engine']} | {t['tok_s_1core']} | {t['tok_s_2cores']} | {t['vs_llama_cpp_1core']}x / "
              f"{t['vs_llama_cpp_2cores']}x |" for t in r["table"]]
    b = r["batch8"]
    lines += ["", f"llama.cpp backend vs int8: {r['llama_vs_int8']['0']}x (1 core), {r['llama_vs_int8']['0,1']}x "
              f"(2 cores); vs float32: {r['llama_vs_float32']['0']}x / {r['llama_vs_float32']['0,1']}x",
              f"batch of 8 samples (2 cores): llama.cpp {b['llama']['batch_tok_s']} tok/s = {b['llama']['ratio']}x its "
              f"8 sequential; int8 transformers {b['hf-int8']['batch_tok_s']} tok/s = {b['hf-int8']['ratio']}x; "
              f"llama.cpp batch / int8 batch = {b['llama_vs_int8_bank']}x",
              f"llama.cpp's own greedy batch of 8 (no reading, argmax): {b['llama_cpp_own']['batch_tok_s']} tok/s = "
              f"{b['llama_cpp_own']['ratio_to_its_stream']}x its single stream"]
    if "peak_rss_mb_1p5b_llama" in r:
        lines.append(f"peak resident memory, embedded-1.5b on llama.cpp: {r['peak_rss_mb_1p5b_llama']} MB")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
