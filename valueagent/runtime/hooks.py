"""Forward hooks that read the value axis and steer along it, always scoped and always removed.

One hook object does both so that reading and steering share the same forward passes: reading is
the cosine between the residual stream at the axis layer and the axis direction, taken *before*
the steering vector is added (so a steered run still reports the model's own state at that layer).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from valueagent.runtime.artifact import residual_value
from valueagent.runtime.layers import block_for_layer, hidden_of, replace_hidden


class AxisHook:
    """Reads the value of ``h`` at every position (``cos(h, d)``; ``h . d + bias`` when ``linear``, a head
    exported as an axis: :func:`~valueagent.runtime.artifact.residual_value`) and optionally adds
    ``alpha_row * unit(d)``.

    ``alpha`` is per batch row, in the residual stream's own units (already multiplied by the
    residual norm). ``steer_prompt`` says per row whether prompt positions (forward passes over
    more than one new position) are steered too; otherwise only generated positions are.
    """

    def __init__(self, direction: torch.Tensor, *, read: bool = True, linear: bool = False,
                 bias: float = 0.0) -> None:
        if direction.ndim != 1:
            raise ValueError(f"direction must be a vector (hidden,), got shape {tuple(direction.shape)}")
        norm = direction.float().norm()
        if not torch.isfinite(norm) or norm == 0:
            raise ValueError("direction has zero or non-finite norm; it cannot define an axis")
        self.unit = (direction.float() / norm).contiguous()  # (H,)
        self.vector = direction.float().contiguous() if linear else self.unit  # what the reading projects on
        self.linear, self.bias = linear, bias
        self.read = read
        self.alpha: torch.Tensor | None = None  # (B,)
        self.steer_prompt: torch.Tensor | None = None  # (B,) bool
        self.last: torch.Tensor | None = None  # (B, T) values of the latest forward pass
        self.last_hidden: torch.Tensor | None = None  # (B, H) residual at the last position (before steering)

    def set_steering(self, alpha: torch.Tensor | None, steer_prompt: torch.Tensor | None = None) -> None:
        self.alpha = alpha
        self.steer_prompt = steer_prompt

    def __call__(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        h = hidden_of(output)  # (B, T, H)
        unit = self.unit.to(device=h.device)
        if self.read:
            hf = h.float()
            self.last = residual_value(hf, self.vector.to(device=h.device), linear=self.linear, bias=self.bias)
            self.last_hidden = hf[:, -1]
        if self.alpha is None:
            return None
        alpha = self.alpha.to(device=h.device, dtype=torch.float32)
        if h.shape[1] > 1:
            keep = self.steer_prompt if self.steer_prompt is not None else torch.zeros_like(alpha, dtype=torch.bool)
            alpha = alpha * keep.to(device=h.device, dtype=torch.float32)
        if not bool((alpha != 0).any()):
            return None
        delta = alpha[:, None, None] * unit[None, None, :]  # (B, 1, H)
        return replace_hidden(output, h + delta.to(h.dtype))


@contextmanager
def attached(model: Any, layer: int, hook: AxisHook) -> Iterator[AxisHook]:
    """Attach ``hook`` at ``layer`` (valueagent convention) for the duration of the block."""
    handle = block_for_layer(model, layer).register_forward_hook(hook)
    try:
        yield hook
    finally:
        handle.remove()


@contextmanager
def steering(
    model: Any, layer: int, direction: torch.Tensor, alpha: float, *, generated_only: bool = False
) -> Iterator[AxisHook]:
    """Steer any forward pass (e.g. ``model.generate``) by ``alpha * unit(direction)`` at ``layer``.

    ``alpha`` is in residual-stream units; use :func:`valueagent.runtime.backend.steer_alpha` to convert a
    fraction of the mean residual norm. With ``generated_only``, passes over several new positions
    (the prompt) are left alone and only one-position decode steps are steered.
    """
    hook = AxisHook(direction, read=True)

    def broadcast(module: torch.nn.Module, args: Any, output: Any) -> Any:
        # Every row of whatever batch passes through shares the scalar alpha.
        b = hidden_of(output).shape[0]
        hook.set_steering(torch.full((b,), float(alpha)), torch.full((b,), not generated_only))
        return hook(module, args, output)

    handle = block_for_layer(model, layer).register_forward_hook(broadcast)
    try:
        yield hook
    finally:
        handle.remove()
