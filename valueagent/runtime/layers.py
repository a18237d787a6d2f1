"""The one layer-index convention of valueagent.

Layer ``L`` means the residual stream *after* decoder block ``L - 1``: exactly
``outputs.hidden_states[L]`` of a transformers model, whose index 0 is the embedding output.
This is the paper's convention and that of its published axis (shape ``(num_layers + 1, hidden)``).
A forward hook on ``model.model.layers[L - 1]`` sees that tensor (before the final norm, which only
the last entry of ``hidden_states`` has applied).
"""

from __future__ import annotations

from typing import Any

import torch


def decoder_layers(model: Any) -> Any:
    """Return the ``nn.ModuleList`` of decoder blocks of a causal LM (Qwen2/Qwen3/Llama layout)."""
    for path in ("model.layers", "model.model.layers", "transformer.h", "gpt_neox.layers"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise ValueError(
        f"cannot find the decoder blocks of {type(model).__name__}; valueagent supports models with "
        "`model.layers` (Qwen2, Qwen3, Llama, Mistral) — pass such a model"
    )


def num_layers(model: Any) -> int:
    """Number of decoder blocks; valid layer indices are ``1..num_layers``."""
    return len(decoder_layers(model))


def block_for_layer(model: Any, layer: int) -> torch.nn.Module:
    """The decoder block whose output is ``hidden_states[layer]``."""
    n = num_layers(model)
    if not 1 <= layer <= n:
        raise ValueError(
            f"layer {layer} is out of range for a model with {n} decoder blocks: use 1..{n} "
            "(layer L = hidden_states[L] = output of decoder block L-1; 0 is the embeddings)"
        )
    block: torch.nn.Module = decoder_layers(model)[layer - 1]
    return block


def hidden_of(output: Any) -> torch.Tensor:
    """The hidden-state tensor in a decoder block's output (a bare tensor in transformers 5, else a tuple)."""
    return output if isinstance(output, torch.Tensor) else output[0]


def replace_hidden(output: Any, hidden: torch.Tensor) -> Any:
    """Rebuild a decoder block's output with a new hidden-state tensor, keeping its form."""
    if isinstance(output, torch.Tensor):
        return hidden
    return (hidden, *output[1:])
