"""Value shift between two checkpoints (the paper's DPO/SFT finding, as a regression check).

The same completions are read under model A with its axis and under model B with its axis; the
report gives each side's mean value, the mean paired shift ``B - A`` with a bootstrap interval, and
the same for the mean token log-probability. Models are loaded one after the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from valueagent.axis.reading import Reading, read_completions
from valueagent.runtime.artifact import ValueAxis
from valueagent.stats import paired_bootstrap_diff

Item = tuple[Sequence[Mapping[str, str]], str]


@dataclass(frozen=True)
class Side:
    """A model to read with: a loader (called once, when its turn comes) and its axis, or a function
    from the loaded model's id to its axis (e.g. the shipped default)."""

    name: str
    load: Callable[[], Any]  # -> LoadedModel-like (model, tokenizer, model_id)
    axis: ValueAxis | Callable[[str], ValueAxis]


def _read(side: Side, items: Sequence[Item], batch_size: int) -> tuple[list[Reading | None], ValueAxis]:
    loaded = side.load()
    axis = side.axis if isinstance(side.axis, ValueAxis) else side.axis(loaded.model_id)
    try:
        return read_completions(loaded.model, loaded.tokenizer, loaded.model_id, axis, items,
                                batch_size=batch_size, progress=f"scoring {side.name}"), axis
    finally:
        del loaded


def value_shift(
    items: Sequence[Item], a: Side, b: Side, *, batch_size: int = 4, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Read ``items`` under both sides and report the shift ``B - A`` (JSON-ready)."""
    (ra, axis_a), (rb, axis_b) = _read(a, items, batch_size), _read(b, items, batch_size)
    keep = [i for i, (x, y) in enumerate(zip(ra, rb, strict=True)) if x is not None and y is not None]
    if len(keep) < 2:
        raise ValueError("need at least two completions with tokens under both models to estimate a shift")
    va = np.array([ra[i].value for i in keep])  # type: ignore[union-attr]
    vb = np.array([rb[i].value for i in keep])  # type: ignore[union-attr]
    la = np.array([ra[i].mean_logprob for i in keep])  # type: ignore[union-attr]
    lb = np.array([rb[i].mean_logprob for i in keep])  # type: ignore[union-attr]
    shift = paired_bootstrap_diff(vb, va, n_boot=n_boot, seed=seed)
    lp_shift = paired_bootstrap_diff(lb, la, n_boot=n_boot, seed=seed)
    return {
        "n": len(keep),
        "a": {"name": a.name, "axis_sha256": axis_a.sha256, "layer": axis_a.layer, "mean_value": float(va.mean())},
        "b": {"name": b.name, "axis_sha256": axis_b.sha256, "layer": axis_b.layer, "mean_value": float(vb.mean())},
        "value_shift": {"mean": shift.estimate, "lo": shift.lo, "hi": shift.hi, "conf": shift.conf},
        "share_higher_under_b": float(np.mean(vb > va)),
        "logprob_shift": {"mean": lp_shift.estimate, "lo": lp_shift.lo, "hi": lp_shift.hi},
        "note": "values are cosines with each side's own axis; a shift is comparable across models only when "
                "both axes were built the same way (same estimator, data and layer convention)",
    }
