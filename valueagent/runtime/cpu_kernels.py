"""CPU decode fixes: few-row linear layers computed as ``W @ x.T``; one OpenMP thread pool per process.

While decoding, every linear layer multiplies a handful of rows (one per request in the batch) by a
large weight. On CPU BLAS the usual ``x @ W.T`` picks a kernel that is slow for 2-16 rows: on this
project's 2-core AVX2 machine the 151936 x 896 output projection took 33 ms for one row and 95 ms for
four, while the same product computed as ``(W @ x.T).T`` took 35 ms for four. Applied to every linear
layer of the embedded model, a decode step for 4 requests went from 2.4x to 1.4x the cost of a step for
one (``benchmarks/bench_backend.py``). Results are the same products, summed in another order.
"""

from __future__ import annotations

import ctypes
import logging
import types
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

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
            module.forward = types.MethodType(_few_row_forward, module)  # type: ignore[method-assign]
            n += 1
    return n


_OPENMP_RUNTIMES = ("libgomp", "libomp", "libiomp")
_OMP_PAUSE_SOFT = 1


def release_openmp_pool() -> bool:
    """Free the OpenMP thread pool of the calling thread; True when a runtime was found and released it.

    The backend runs the model in its own worker thread. OpenMP keeps one pool per thread that ever ran
    parallel work, so after loading a model in the main thread a process holds two pools; with more pool
    threads than cores, libgomp shortens its threads' spin-waits and every parallel region pays to wake a
    sleeping thread (the likely cause; the slowdown is what was measured). On this project's 2-core
    machine an int8 decode step in a worker thread took 1.4-1.6x the loading thread's time until that
    thread's pool was released, then 0.9-1.0x (``benchmarks/bench_threads.py``). A thread that runs
    parallel work again gets a new pool, at the cost of creating it. Linux only (the runtime is found in
    ``/proc/self/maps``); elsewhere this returns False and changes nothing.
    """
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split()[-1] for line in maps if any(name in line for name in _OPENMP_RUNTIMES)}
    except OSError:
        return False
    released = False
    for path in sorted(paths):
        try:
            pause = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):
            continue
        pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
        if pause(_OMP_PAUSE_SOFT) == 0:
            released = True
        else:
            log.debug("omp_pause_resource_all failed in %s", path)
    return released
