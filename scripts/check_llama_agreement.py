"""How closely the llama.cpp backend agrees with the float32 transformers path on the embedded model (issue 27).

On the first ``--tasks`` HumanEval problems, in the agent's own chat prompt:

1. teacher-forced: each problem's canonical solution scored by both engines (the same token ids): the Pearson
   correlation of the per-token values (pooled over all tokens, and per problem: its median), the mean absolute
   difference, and the same for the log-probabilities;
2. greedy: ``--tokens`` greedy tokens from both engines: how many problems give the same text, and where two
   part, the transformers path's gap between its two best tokens there (a near tie is < 1 nat) and the position;
3. steering: the greedy answer steered by -0.5 and +0.5 of the residual norm on both engines: whether each
   engine's steered text differs from its unsteered one, and the steered values' correlation over the tokens
   the two engines share.

Usage: python scripts/check_llama_agreement.py [--tasks 12] [--tokens 128]
       [--out benchmarks/results/llama_agreement.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _part(a: list[int], b: list[int]) -> int | None:
    return next((k for k, (s, t) in enumerate(zip(a, b, strict=False)) if s != t),
                None if len(a) == len(b) else min(len(a), len(b)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/llama_agreement.json"))
    args = ap.parse_args()

    from valueagent.agent.prompts import PromptConfig, task_messages
    from valueagent.runtime.backend import load_backend
    from valueagent.runtime.generation import GenerationRequest
    from valueagent.tasks import load_humaneval

    tasks = load_humaneval()[: args.tasks]
    prompt = PromptConfig()
    llama = load_backend("embedded", backend="llama", max_batch=4)
    hf = load_backend("embedded", backend="hf", dtype="float32", device="cpu", prefix_cache_mb=0, max_batch=4)
    forced, greedy, steered = [], [], []
    for task in tasks:
        _say(task.task_id)
        messages = tuple(task_messages({"prompt": task.prompt}, prompt))  # type: ignore[typeddict-item]
        completion = f"{prompt.prefill}{task.prompt}{task.canonical_solution}```"
        x, y = llama.score_sync(messages, completion), hf.score_sync(messages, completion)
        assert x.token_ids == y.token_ids
        forced.append({"task_id": task.task_id, "values": (x.values, y.values),
                       "logprobs": (x.logprobs, y.logprobs)})
        req = GenerationRequest(messages=messages, max_new_tokens=args.tokens, assistant_prefix=prompt.prefill)
        a, b = llama.generate_sync(req), hf.generate_sync(req)
        k = _part(a.token_ids, b.token_ids)
        gap = None
        if k is not None and k < len(b.top_logprobs):
            top = sorted(b.top_logprobs[k], reverse=True)
            gap = top[0] - top[1]
        greedy.append({"task_id": task.task_id, "same": k is None, "parted_at": k, "hf_top2_gap": gap,
                       "tokens": [a.n_tokens, b.n_tokens]})
        for s in (-0.5, 0.5):
            sr = GenerationRequest(messages=messages, max_new_tokens=args.tokens // 2, steer=s,
                                   assistant_prefix=prompt.prefill)
            sa, sb = llama.generate_sync(sr), hf.generate_sync(sr)
            n = _part(sa.token_ids, sb.token_ids) or min(sa.n_tokens, sb.n_tokens)
            steered.append({"task_id": task.task_id, "steer": s, "shared_tokens": n,
                            "llama_moved": sa.token_ids != a.token_ids[: sa.n_tokens],
                            "hf_moved": sb.token_ids != b.token_ids[: sb.n_tokens],
                            "values": (sa.values[:n], sb.values[:n])})
    va = np.concatenate([f["values"][0] for f in forced])
    vb = np.concatenate([f["values"][1] for f in forced])
    la = np.concatenate([f["logprobs"][0] for f in forced])
    lb = np.concatenate([f["logprobs"][1] for f in forced])
    per_task = [float(np.corrcoef(*f["values"])[0, 1]) for f in forced]
    sv = [(np.asarray(s["values"][0]), np.asarray(s["values"][1])) for s in steered if s["shared_tokens"] >= 3]
    result: dict[str, Any] = {
        "model": "embedded (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF)",
        "engines": {"llama": llama.info().weights, "hf": f"{hf.info().weights}, {hf.info().dtype} arithmetic"},
        "tasks": [t.task_id for t in tasks],
        "teacher_forced": {
            "tokens": int(va.size), "value_pearson": round(float(np.corrcoef(va, vb)[0, 1]), 5),
            "value_pearson_per_task_median": round(float(np.median(per_task)), 5),
            "value_pearson_per_task_min": round(float(np.min(per_task)), 5),
            "value_mean_abs_diff": round(float(np.abs(va - vb).mean()), 5),
            "value_spread_sd": round(float(vb.std()), 5),
            "logprob_pearson": round(float(np.corrcoef(la, lb)[0, 1]), 5),
            "logprob_mean_abs_diff": round(float(np.abs(la - lb).mean()), 5),
        },
        "greedy": {
            "same_text": sum(g["same"] for g in greedy), "of": len(greedy),
            "parted_at_near_tie": sum(g["hf_top2_gap"] is not None and g["hf_top2_gap"] < 1.0 for g in greedy),
            "rows": greedy,
        },
        "steering": {
            "llama_moved": sum(s["llama_moved"] for s in steered), "hf_moved": sum(s["hf_moved"] for s in steered),
            "of": len(steered),
            "steered_value_pearson": round(float(np.corrcoef(np.concatenate([a for a, _ in sv]),
                                                             np.concatenate([b for _, b in sv]))[0, 1]), 5),
            "shared_tokens_median": float(np.median([s["shared_tokens"] for s in steered])),
        },
    }
    llama.close()
    hf.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k in ("teacher_forced",)}, indent=1))
    g = result["greedy"]
    print(f"greedy: {g['same_text']}/{g['of']} identical; {g['parted_at_near_tie']} parted at a near tie (< 1 nat)")
    st = result["steering"]
    print(f"steering moved llama {st['llama_moved']}/{st['of']}, hf {st['hf_moved']}/{st['of']}; steered values r = "
          f"{st['steered_value_pearson']}")


if __name__ == "__main__":
    main()
