"""The build report's figure: per layer, each estimator's held-out readings next to their controls."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_layers(report: dict[str, Any], path: str | Path) -> Path:
    """Write a PNG of every estimator per layer: the selection data (token AUROC with position, random and
    log-prob controls; matched-position AUROC; held-out contrasts; rollout pass AUROC), the selection
    score, and the code-pair test (shown per layer for the record; it never decides)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    est = report["per_layer"]  # {estimator: [{metric: value}, ...]}
    ctrl = report["controls"]["tokens"]
    fig, grid = plt.subplots(2, 4, figsize=(22, 8.5), sharex=True)
    axes = grid.ravel()
    panels = (
        ("auroc", "held-out token AUROC (after vs before)"),
        ("matched_auroc", "same, at matched paragraph positions"),
        ("contrast_auroc", "held-out contrasts: success vs failure context"),
        ("rollout_value_auroc", "own rollouts: pass AUROC (probe out-of-fold)"),
        ("code_dev_win_rate", "dev code pairs: correct > mutant"),
        ("selection_score", "selection: mean margin over random"),
        ("test_code_win_rate", "TEST (never used to choose): correct > mutant"),
        ("rollout_combined_auroc", "own rollouts: value + log-prob (CV logistic)"),
    )
    ctrl_lines = {
        "matched_auroc": ("random_matched_auroc_oriented_mean", "logprob_matched_auroc_oriented"),
        "contrast_auroc": ("contrast_random_auroc_oriented_mean", None),
        "rollout_value_auroc": ("rollout_random_auroc_oriented_mean", None),
        "rollout_combined_auroc": ("rollout_random_auroc_oriented_mean", None),
        "code_dev_win_rate": ("code_dev_random_win_rate_oriented_mean", None),
        "test_code_win_rate": ("test_code_random_win_rate_oriented_mean", None),
    }
    for ax, (metric, title) in zip(axes, panels, strict=True):
        if metric.startswith("rollout") and all(r.get(metric) is None for rows in est.values() for r in rows):
            ax.set_title(title, fontsize=10)
            ax.text(0.5, 0.5, "no own rollouts in this build (--samples 0)", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9, color="tab:gray")
            ax.set_yticks([])
            continue
        for name, rows in est.items():
            ys = [r.get(metric) for r in rows]
            ax.plot(layers, [float("nan") if y is None else y for y in ys], marker="o", ms=3, label=name)
        if metric == "auroc":
            for key, ls in (("position_rel_auroc", "--"), ("position_abs_auroc", ":")):
                if ctrl.get(key) is not None:
                    ax.axhline(ctrl[key], color="k", ls=ls, lw=1, label=key.replace("_auroc", ""))
            ax.plot(layers, [r["random_auroc_oriented_mean"] for r in ctrl["per_layer"]], "k-", lw=0.8,
                    alpha=0.5, label="random (oriented mean)")
            ax.axhline(ctrl["logprob_auroc_oriented"], color="tab:gray", ls="-.", lw=1, label="log-prob (oriented)")
        elif metric in ctrl_lines:
            key, lp = ctrl_lines[metric]
            ys = [r.get(key) for r in ctrl["per_layer"]]
            if any(y is not None for y in ys):
                ax.plot(layers, [float("nan") if y is None else y for y in ys], "k-", lw=0.8, alpha=0.5,
                        label="random (oriented mean)")
            if lp is not None:
                ax.axhline(ctrl[lp], color="tab:gray", ls="-.", lw=1, label="log-prob (oriented)")
            rows0 = next(iter(est.values()))
            lp_key = {"rollout_value_auroc": "rollout_logprob_auroc",
                      "rollout_combined_auroc": "rollout_logprob_auroc"}.get(metric)
            if lp_key and rows0 and rows0[0].get(lp_key) is not None:
                ax.axhline(rows0[0][lp_key], color="tab:gray", ls="-.", lw=1, label="log-prob")
            lp_code = {"test_code_win_rate": "test_code_logprob_win_rate",
                       "code_dev_win_rate": "code_dev_logprob_win_rate"}.get(metric)
            if lp_code and report["controls"].get(lp_code) is not None:
                ax.axhline(report["controls"][lp_code], color="tab:gray", ls="-.", lw=1, label="log-prob")
                ax.axhline(0.6, color="tab:green", ls=":", lw=1, label="goal 0.6")
        else:
            ax.axhline(0.0, color="k", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    for ax in grid[1]:
        ax.set_xlabel("layer (hidden_states index)")
    chosen = report.get("chosen")
    if chosen:
        for ax in axes:
            ax.axvline(chosen["layer"], color="tab:red", alpha=0.4, lw=2)
        fig.suptitle(f"{report['model_id']}: chosen {chosen['estimator']} @ layer {chosen['layer']}", fontsize=11)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
