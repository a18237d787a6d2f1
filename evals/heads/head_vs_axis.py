"""Does the exported value head beat the contrastive value axis on the test split it was judged on?

    python evals/heads/head_vs_axis.py embedded      # -> evals/heads/qwen2.5-coder-0.5b/head-vs-axis.json

`bank heads` pairs every signal with log-prob; the question "should the head replace the shipped axis as
`--axis default`" pairs the exported head with the axis's own reading, per task: within-task AUROC over the
tasks whose fresh samples disagree (bootstrap CI, exact sign-flip p) and best of N untested (McNemar, bootstrap
CI), Holm over the two. Reads the committed bank and the committed head scores; no model, no features.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from valueagent.bank.store import load_bank
from valueagent.search_rules import top
from valueagent.signals import signal_spec
from valueagent.stats import auroc, holm, paired_bootstrap_diff, paired_outcomes, paired_sign_flip

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"embedded": "qwen2.5-coder-0.5b", "embedded-1.5b": "qwen2.5-coder-1.5b"}


def _best(scores: np.ndarray) -> int:
    """The fresh sample (index >= 1) the rank rule chooses."""
    return top({j: float(scores[j]) for j in range(1, len(scores))})


def main(model: str) -> dict[str, object]:
    name = NAMES[model]
    out_dir = ROOT / "evals" / "heads" / name
    head_meta = json.loads((out_dir / "head-axis.json").read_text())
    head = head_meta["validation"]["head"]["name"]
    doc = json.loads((out_dir / "heads-mbpp-test-scores.json").read_text())
    bank = load_bank(ROOT / doc["bank"])
    value = signal_spec("value").score
    within_h, within_v, top_h, top_v = [], [], [], []
    for task in bank:
        y = np.asarray([bool(s["hidden_passed"]) for s in task["samples"]])
        hs = np.asarray(doc["scores"][task["task_id"]][head], float)
        vs = np.asarray([value(s) for s in task["samples"]], float)
        if 0 < y[1:].sum() < len(y) - 1:
            within_h.append(auroc(hs[1:], y[1:]))
            within_v.append(auroc(vs[1:], y[1:]))
        top_h.append(bool(y[_best(hs)]))
        top_v.append(bool(y[_best(vs)]))
    wh, wv = np.asarray(within_h), np.asarray(within_v)
    dw = paired_bootstrap_diff(wh, wv, n_boot=10_000)
    p_w = paired_sign_flip(wh, wv)
    pc = paired_outcomes(np.asarray(top_h), np.asarray(top_v), n_boot=10_000)
    p_holm = holm([p_w, pc.p_value])
    result = {
        "bank": doc["bank"], "head": head, "head_sha256": head_meta["sha256"],
        "axis": "value (shipped contrastive axis)",
        "tasks": len(top_h), "mixed_tasks": len(wh),
        "within_task_auroc": {"head": float(wh.mean()), "axis": float(wv.mean()), "delta": dw.estimate,
                              "ci": [dw.lo, dw.hi], "p": p_w, "p_holm": p_holm[0]},
        "best_of_n_untested": {"head": float(np.mean(top_h)), "axis": float(np.mean(top_v)),
                               "delta": pc.delta.estimate, "ci": [pc.delta.lo, pc.delta.hi], "wins": pc.wins,
                               "losses": pc.losses, "p": pc.p_value, "p_holm": p_holm[1]},
    }
    (out_dir / "head-vs-axis.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "embedded"), indent=2))
