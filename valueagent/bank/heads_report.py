"""Render a value-heads result: Markdown tables per test set and a PNG of within-task AUROC by layer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FLAT = ("logprob", "confidence", "value", "random")


def _ci(x: list[float], scale: float = 1.0, fmt: str = ".3f") -> str:
    return f"[{scale * x[0]:{fmt}}, {scale * x[1]:{fmt}}]"


def test_rows(test: Mapping[str, Any]) -> list[str]:
    spread = test.get("random_control_spread")
    noise = "" if not spread else (
        f" A signal that knows nothing (the random control, {spread['seeds']} seeds) reads {spread['mean']:.3f} "
        f"within-task on average, SD {spread['sd']:.3f} from seed to seed (range {spread['min']:.3f}-"
        f"{spread['max']:.3f}): the table's `random` row is one of them (seed 0).")
    rows = [f"{test['n_tasks']} tasks ({test['mixed_tasks']} with mixed outcomes among their fresh samples), "
            f"{test['n_fresh']} fresh samples, {100 * test['fresh_pass_rate']:.1f}% pass; best of N with an oracle "
            f"{100 * test['oracle_best_of_n']:.1f}%. Deltas are against `{test['reference']}`, paired by task."
            + noise, "",
            "| signal | within-task AUROC [95% CI] | Δ vs log-prob [95% CI] (p, Holm) | pooled AUROC [95% CI] | "
            "best of N untested % [95% CI] | Δ pts vs log-prob [95% CI] (W/L, p Holm) |",
            "|---|---|---|---|---|---|"]
    for name, q in test["signals"].items():
        vs = q.get("vs_reference")
        dw = "—" if vs is None else (f"{vs['within_delta']:+.3f} {_ci(vs['within_ci'], fmt='+.3f')} "
                                    f"({vs['within_p']:.3f}, {vs['within_p_holm']:.3f})")
        dt = "—" if vs is None else (f"{100 * vs['best_of_n_delta']:+.1f} {_ci(vs['best_of_n_ci'], 100, '+.1f')} "
                                    f"({vs['wins']}/{vs['losses']}, {vs['best_of_n_p_holm']:.3f})")
        rows.append(f"| {name} | {q['within_task_auroc']:.3f} {_ci(q['within_task_ci'])} | {dw} | "
                    f"{q['pooled_auroc']:.3f} {_ci(q['pooled_ci'])} | {100 * q['best_of_n']:.1f} "
                    f"{_ci(q['best_of_n_ci'], 100, '.1f')} | {dt} |")
    return rows


def render(doc: Mapping[str, Any]) -> str:
    lines = [f"# Value heads: {doc['model_id']} ({doc.get('quantization') or 'float'} bank)", "",
             f"Fitted on {doc['fit']['train_tasks']} MBPP train tasks, chosen on {doc['fit']['validation_tasks']} "
             f"validation tasks by within-task AUROC, refitted on both ({doc['fit']['samples']} samples); "
             f"fit bank `{doc['fit_bank']}`.", "", "Chosen heads: " + ", ".join(
                 f"`{c['name']}` (C {c['c']}, {'centred' if c['centre'] else 'raw'})" for c in doc["chosen"]), "",
             "Validation within-task AUROC of the fixed signals: " + ", ".join(
                 f"{k} {v:.3f}" for k, v in doc["validation_baselines"].items()), ""]
    cen = doc.get("centring") or {}
    if cen.get("centred") and cen.get("raw"):
        lines += [f"Mean-residual probe on validation, centred per task {cen['centred']['val_within']:.3f} (layer "
                  f"{cen['centred']['layer']}) against raw {cen['raw']['val_within']:.3f} (layer "
                  f"{cen['raw']['layer']}): the better one is chosen.", ""]
    for label, test in doc["tests"].items():
        lines += [f"## {label} (`{test['bank']}`)", "", *test_rows(test), ""]
    return "\n".join(lines) + "\n"


def plot_layers(doc: Mapping[str, Any], label: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = doc["tests"][label]
    fig, ax = plt.subplots(figsize=(7, 4))
    for source, style in (("mean", "-o"), ("last", "-s")):
        curve = test["by_layer"][source]
        layers = sorted(int(k) for k in curve)
        ax.plot(layers, [curve[k if k in curve else str(k)]["test"] for k in layers], style, ms=3,
                label=f"probe on {source} residual")
    for name, color in zip(FLAT, ("C2", "C3", "C4", "0.5"), strict=True):
        if name == "random" and test.get("random_control_spread"):
            spread = test["random_control_spread"]
            ax.axhspan(spread["mean"] - spread["sd"], spread["mean"] + spread["sd"], color="0.85", lw=0,
                       label=f"random (mean ± SD of {spread['seeds']} seeds)")
        elif name in test["signals"]:
            ax.axhline(test["signals"][name]["within_task_auroc"], color=color, ls="--", lw=1, label=name)
    ax.set_xlabel("layer (hidden_states index)")
    ax.set_ylabel("within-task AUROC")
    ax.set_title(f"{doc['model_id']}: {label}", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_heads_report(doc: Mapping[str, Any], output: Path) -> None:
    """``output`` (JSON), ``output.md``, and per test set ``output-<label>.png`` and the per-sample scores
    ``output-<label>-scores.json`` that ``bank replay --scores`` reads."""
    output.parent.mkdir(parents=True, exist_ok=True)
    for label, scores in doc["scores"].items():
        output.with_name(f"{output.stem}-{label}-scores.json").write_text(json.dumps(scores) + "\n")
    output.write_text(json.dumps({k: v for k, v in doc.items() if k != "scores"}, indent=1) + "\n")
    output.with_suffix(".md").write_text(render(doc))
    for label in doc["tests"]:
        plot_layers(doc, label, output.with_name(f"{output.stem}-{label}.png"))
