"""Int8 decoding against float32, from one run (not a timed test): what it costs in fidelity, what it buys
in speed.

1. ``fidelity``: the project's synthetic coding tasks (prompt + reference solution, none from HumanEval)
   teacher-forced through the float32 model and through its int8 copy with every product forced through
   int8 (as decoding runs them): next-token top-1 agreement, mean KL(float || int8) per token, and the
   value reading at the axis layer (correlation, mean absolute difference, and the reading's own spread).
2. ``greedy``: chat-prompted greedy answers to the same tasks, ``--tokens`` long, under both models: the
   share of tokens before the first divergence.
3. ``decode``: median seconds per decode step at batch sizes 1, 4, 8 and 16 over a 300-token context, float32
   and int8 measured alternately; ratios within each batch size and across batch sizes.

Usage: python benchmarks/bench_quant.py [--model embedded] [--texts 24] [--tokens 64] [--steps 16]
       [--out benchmarks/results/quant.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import valueagent.runtime.quant as quant
from valueagent.runtime.artifact import load_axis, shipped_axis_path
from valueagent.runtime.loading import load_model, render_chat
from valueagent.tasks import load_jsonl


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _teacher_forced(model: Any, ids: list[torch.Tensor], layer: int, direction: torch.Tensor) -> list[Any]:
    out = []
    with torch.inference_mode():
        for x in ids:
            o = model(input_ids=x, output_hidden_states=True)
            h = o.hidden_states[layer][0, 1:]  # position 0 is an outlier: left out as everywhere
            logp = torch.log_softmax(o.logits[0].float(), -1)
            out.append((logp, torch.cosine_similarity(h, direction[None], dim=-1)))
    return out


def fidelity(plain: Any, int8: Any, ids: list[torch.Tensor], layer: int, direction: torch.Tensor) -> dict[str, Any]:
    a = _teacher_forced(plain, ids, layer, direction)
    quant.PREFILL_IN_FLOAT = False  # every product through int8, as for generated tokens
    try:
        b = _teacher_forced(int8, ids, layer, direction)
    finally:
        quant.PREFILL_IN_FLOAT = True
    agree = sum(int((la.argmax(-1) == lb.argmax(-1)).sum()) for (la, _), (lb, _) in zip(a, b, strict=True))
    tokens = sum(la.shape[0] for la, _ in a)
    kl = torch.cat([(la.exp() * (la - lb)).sum(-1) for (la, _), (lb, _) in zip(a, b, strict=True)])
    va, vb = torch.cat([v for _, v in a]), torch.cat([v for _, v in b])
    return {
        "texts": len(ids), "tokens": tokens, "top1_agreement": round(agree / tokens, 4),
        "mean_kl": float(kl.mean()), "value_corr": float(torch.corrcoef(torch.stack([va, vb]))[0, 1]),
        "value_mean_abs_diff": float((va - vb).abs().mean()), "value_sd": float(va.std()),
    }


def greedy(plain: Any, int8: Any, prompts: list[torch.Tensor], tokens: int) -> dict[str, Any]:
    shared, total, identical = 0, 0, 0
    with torch.inference_mode():
        for x in prompts:
            outs = [m.generate(input_ids=x, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)[0]
                    for m in (plain, int8)]
            outs = [o[x.shape[1]:] for o in outs]
            same = (outs[0] == outs[1]).long()
            first_diff = int(same.argmin()) if not bool(same.all()) else len(same)
            shared, total, identical = shared + first_diff, total + len(same), identical + int(bool(same.all()))
    return {"prompts": len(prompts), "tokens_each": tokens, "shared_prefix_share": round(shared / total, 4),
            "identical_answers": identical}


def decode_steps(models: dict[str, Any], steps: int, context: int = 300) -> dict[str, Any]:
    times: dict[str, dict[int, list[float]]] = {name: {} for name in models}
    with torch.inference_mode():
        for batch in (1, 4, 8, 16):
            ids = torch.randint(1000, 5000, (batch, context))
            nxt = torch.randint(1000, 5000, (batch, 1))
            for _ in range(2):  # alternate so machine noise hits both alike
                for name, m in models.items():
                    cache = m(input_ids=ids, use_cache=True, logits_to_keep=1).past_key_values
                    for _ in range(steps):
                        t = time.perf_counter()
                        cache = m(input_ids=nxt, past_key_values=cache, use_cache=True).past_key_values
                        times[name].setdefault(batch, []).append(time.perf_counter() - t)
            _say(f"  batch {batch}: " + ", ".join(f"{n} {statistics.median(times[n][batch]):.3f} s" for n in models))
    med = {n: {b: statistics.median(v) for b, v in t.items()} for n, t in times.items()}
    return {
        "context": context, "median_step_s": {n: {str(b): round(s, 4) for b, s in m.items()} for n, m in med.items()},
        "int8_speedup": {str(b): round(med["float32"][b] / med["int8"][b], 2) for b in med["int8"]},
        "batch_cost_vs_1": {n: {str(b): round(m[b] / m[1], 2) for b in m} for n, m in med.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded")
    p.add_argument("--texts", type=int, default=24)
    p.add_argument("--tokens", type=int, default=64, help="Greedy tokens per prompt in part 2.")
    p.add_argument("--steps", type=int, default=16, help="Decode steps per batch size and repeat in part 3.")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/quant.json"))
    a = p.parse_args()
    plain = load_model(a.model, device="cpu", dtype="float32")
    int8 = load_model(a.model, device="cpu", dtype="float32", quantize="int8")
    axis_path = shipped_axis_path(plain.model_id)
    if axis_path is None:
        sys.exit(f"no shipped value axis for {plain.model_id}: this benchmark reads one")
    axis = load_axis(axis_path)
    direction = torch.tensor(axis.direction, dtype=torch.float32)
    tasks = load_jsonl("tasks/synthetic_code/tasks.jsonl")[: a.texts]
    tok = plain.tokenizer
    texts = [torch.tensor([tok(t.prompt + t.canonical_solution)["input_ids"]]) for t in tasks]
    prompts = [torch.tensor([tok(render_chat(tok, [{"role": "user", "content": t.prompt}]))["input_ids"]])
               for t in tasks]
    report: dict[str, Any] = {"model": plain.model_id, "axis_layer": axis.layer,
                              "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "torch_threads": torch.get_num_threads()}
    _say("fidelity (teacher-forced)")
    report["fidelity"] = fidelity(plain.model, int8.model, texts, axis.layer, direction)
    _say(json.dumps(report["fidelity"]))
    _say("greedy answers")
    report["greedy"] = greedy(plain.model, int8.model, prompts, a.tokens)
    _say(json.dumps(report["greedy"]))
    _say("decode steps")
    report["decode"] = decode_steps({"float32": plain.model, "int8": int8.model}, a.steps)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
