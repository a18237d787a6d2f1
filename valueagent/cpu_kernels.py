"""A CPU decode fix: few-row linear layers computed as ``W @ x.T``.

While decoding, every linear layer multiplies a handful of rows (one per request in the batch) by a
large weight. On CPU BLAS the usual ``x @ W.T`` picks a kernel that is slow for 2-16 rows: on this
project's 2-core AVX2 machine the 151936 x 896 output projection took 33 ms for one row and 95 ms for
four, while the same product computed as ``(W @ x.T).T`` took 35 ms for four. Applied to every linear
layer of the embedded model, a decode step for 4 requests went from 2.4x to 1.4x the cost of a step for
one (``benchmarks/bench_backend.py``). Results are the same products, summed in another order.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

# Above this many rows (prefill) the default kernel is the fast one.
SMALL_ROWS = 16


def _few_row_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    rows = x.numel() // x.shape[-1] if x.dim() > 0 and x.shape[-1] else 0
    if not 1 < rows <= SMALL_ROWS or torch.is_grad_enabled():
        return F.linear(x, self.weight, self.bias)
    y = torch.mm(self.weight, x.reshape(rows, x.shape[-1]).t()).t()
    if self.bias is not None:
        y = y + self.bias
    return y.reshape(*x.shape[:-1], self.weight.shape[0])


def use_few_row_linear(model: Any) -> int:
    """Route the few-row products of every ``nn.Linear`` in ``model`` through ``W @ x.T`` (CPU only;
    a no-op on other devices). Returns the number of layers changed. Gradients keep the default path."""
    if next(model.parameters()).device.type != "cpu":
        return 0
    n = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.forward = types.MethodType(_few_row_forward, module)
            n += 1
    return n
