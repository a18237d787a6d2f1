"""Int8 linear layers for CPU decoding: int8 weights (one scale per output channel), activations
quantized per row on the fly, products on fbgemm's int8 kernels.

Decoding a small model on a CPU is bound by reading the weights: every step streams all of them through
memory. Stored in int8 they are a quarter of their float32 size; on this project's 2-core AVX2 machine
(no fast bf16) a decode step of the embedded model took 0.066 s instead of 0.156 s for one request and
0.082 s instead of 0.232 s for four (``benchmarks/bench_quant.py``).

fbgemm's dynamic linear quantizes its whole input with one scale, so a row's result would depend on the
other rows of the batch (and greedy outputs on which requests happened to share a step). Here each row is
first divided by its own largest magnitude and an anchor row ``[1, -1, 0, ...]`` joins the batch: every
input then spans exactly ``[-1, 1]``, the quantization parameters are the same for every batch, the
integer products are exact, and each row's result is its own, whatever the batch around it.

fbgemm quantizes activations to 7 bits (it keeps one against int16 overflow), so each row is sent twice
through one read of the weights: its quantization, then that quantization's residual times 127, which
leaves ~1/127^2 of the row's peak. Weights get 8 bits per output channel. Against float32 on real text
(``benchmarks/bench_quant.py``): next-token top-1 agreement 99.4%, value reading correlation 0.999.
Prompt tokens keep the float weights (see ``PREFILL_IN_FLOAT``).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

QUANTIZATIONS = ("int8",)

# Prompt tokens (inputs with more than one position per sequence) go through the float weights: a
# prefill is bound by arithmetic, where the float kernel is the faster one, and its keys and values
# stay exact. Generated tokens (one position per sequence) go through int8. The choice depends on the
# request alone, never on which other requests share the batch.
PREFILL_IN_FLOAT = True
_LEVELS = 127.0  # fbgemm's 7-bit activation range (one bit is kept against int16 overflow)


class Int8Linear(torch.nn.Module):
    """An inference-only stand-in for a float ``nn.Linear`` (see the module docstring)."""

    _anchor: torch.Tensor

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        self.in_features, self.out_features = int(w.shape[1]), int(w.shape[0])
        if self.in_features < 2:
            raise ValueError(f"Int8Linear needs at least 2 input features for its anchor row, got {self.in_features}")
        scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
        with warnings.catch_warnings():
            # Quantized tensors are deprecated in torch, but they are the only way to fbgemm's int8
            # kernels; torch is pinned (2.13.0) and tests/test_quant.py fails the day they go.
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions", category=UserWarning)
            qweight = torch.quantize_per_channel(
                w, scale, torch.zeros(self.out_features, dtype=torch.long), 0, torch.qint8
            )
            self._packed = torch.ops.quantized.linear_prepack(qweight, None)
        self.weight, self.bias = linear.weight, linear.bias  # the float layer, for prefills
        anchor = torch.zeros(1, self.in_features)
        anchor[0, 0], anchor[0, -1] = 1.0, -1.0
        self.register_buffer("_anchor", anchor, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape, dtype = x.shape, x.dtype
        if PREFILL_IN_FLOAT and x.dim() >= 3 and shape[-2] > 1:
            return F.linear(x, self.weight, self.bias)
        n = x.numel() // self.in_features
        rows = x.reshape(n, self.in_features).float()
        peak = rows.abs().amax(dim=1, keepdim=True).clamp_min_(1e-30)
        unit = rows / peak
        # fbgemm quantizes [-1, 1] (the anchor fixes that range) in steps of 2/127 around zero point 64
        # (+1 lands on 128: its clamp is the byte's). What that leaves out of ``unit``, times 127, goes
        # through the same product as a second row, so both share one read of the weights.
        steps = unit.mul(_LEVELS / 2).round_()
        rest = unit.mul(_LEVELS).sub_(steps.mul_(2.0))
        y = torch.ops.quantized.linear_dynamic(torch.cat([unit, rest, self._anchor]), self._packed, True)
        y = torch.add(y[:n], y[n : 2 * n], alpha=1.0 / _LEVELS).mul_(peak)
        if self.bias is not None:
            y = y.add_(self.bias.float())
        return y.reshape(*shape[:-1], self.out_features).to(dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_int8(model: Any) -> int:
    """Replace every ``nn.Linear`` of ``model`` (the output projection included) by an :class:`Int8Linear`.

    CPU only, inference only; returns the number of layers replaced. The embedding table stays float (it
    is read one row per token); a tied output projection gets its own int8 copy. The float weights stay
    too (prompts use them), so memory grows by a quarter of the float32 linear weights.
    """
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(
            f"int8 quantization runs on CPU kernels only, but the model is on {device}; drop --quantize "
            "on a GPU (bf16 is the default there)"
        )
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        raise RuntimeError(
            "int8 quantization needs torch's fbgemm engine (x86 CPUs), which this torch build lacks; "
            "run without --quantize"
        )
    torch.backends.quantized.engine = "fbgemm"
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is torch.nn.Linear
    ]
    for parent, name, child in targets:
        setattr(parent, name, Int8Linear(child))
    return len(targets)
