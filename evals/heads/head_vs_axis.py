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

from valueagent.bank.head_protocol import judge
from valueagent.bank.heads import load_samples
from valueagent.bank.store import load_bank
from valueagent.stats import holm

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"embedded": "qwen2.5-coder-0.5b", "embedded-1.5b": "qwen2.5-coder-1.5b"}


def main(model: str) -> dict[str, object]:
    name = NAMES[model]
    out_dir = ROOT / "evals" / "heads" / name
    head_meta = json.loads((out_dir / "head-axis.json").read_text())
    head = head_meta["validation"]["head"]["name"]
    doc = json.loads((out_dir / "heads-mbpp-test-scores.json").read_text())
    bank = load_bank(ROOT / doc["bank"])
    data = load_samples(bank, features=False)
    order = {(t, int(i)): k for k, (t, i) in enumerate(zip(data.task_ids.tolist(), data.index.tolist(), strict=True))}
    scores = np.zeros(len(data))
    for tid, per in doc["scores"].items():
        for i, x in enumerate(per[head]):
            scores[order[(tid, i)]] = x
    # `bank heads`' own pairing (per task, bootstrap CI, sign-flip / McNemar), with the axis as the reference;
    # Holm here is over this head's two measures (the one decision: replace the default axis or not)
    row = judge({"value": np.asarray(data.fixed["value"]), head: scores}, data, reference="value")
    j, ref = row["signals"][head], row["signals"]["value"]
    vs = j["vs_reference"]
    p_holm = holm([vs["within_p"], vs["best_of_n_p"]])
    result = {
        "bank": doc["bank"], "head": head, "head_sha256": head_meta["sha256"],
        "axis": "value (shipped contrastive axis)",
        "tasks": row["n_tasks"], "mixed_tasks": row["mixed_tasks"],
        "within_task_auroc": {"head": j["within_task_auroc"], "axis": ref["within_task_auroc"],
                              "delta": vs["within_delta"], "ci": vs["within_ci"], "p": vs["within_p"],
                              "p_holm": p_holm[0]},
        "best_of_n_untested": {"head": j["best_of_n"], "axis": ref["best_of_n"], "delta": vs["best_of_n_delta"],
                               "ci": vs["best_of_n_ci"], "wins": vs["wins"], "losses": vs["losses"],
                               "p": vs["best_of_n_p"], "p_holm": p_holm[1]},
    }
    (out_dir / "head-vs-axis.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "embedded"), indent=2))
