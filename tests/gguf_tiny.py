"""Write the tiny Qwen3 test model (tests/conftest.py) as an F32 GGUF file llama.cpp loads, with its tokenizer.

Tensor names come from the ``gguf`` package's map for the Qwen3 architecture (as llama.cpp's own converter
takes them); Qwen models use NEOX rope, so no projection is permuted. The vocabulary is the tiny byte-level
BPE's, padded to the model's 1024 rows as llama.cpp's converter pads. The tokenizer is saved beside the file
so :func:`valueagent.runtime.llama.load_llama_backend` tokenizes exactly as the transformers path does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def write_tiny_gguf(model: Any, tokenizer: Any, folder: Path) -> Path:
    import gguf

    cfg = model.config
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.gguf"
    arch = gguf.MODEL_ARCH.QWEN3
    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    w.add_name("tiny-qwen3")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", None) or cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    # The vocabulary: the BPE's tokens by id, then padding rows up to the embedding's size.
    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    special = set(tokenizer.all_special_ids)
    tokens, types = [], []
    for i in range(cfg.vocab_size):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_eos_token_id(tokenizer.eos_token_id)
    w.add_pad_token_id(tokenizer.pad_token_id)
    w.add_bos_token_id(tokenizer.pad_token_id)
    w.add_add_bos_token(False)
    names = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":  # tied to the embedding: llama.cpp reuses token_embd
            continue
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ValueError(f"no GGUF name for {name}")
        w.add_tensor(target, np.ascontiguousarray(tensor.detach().float().numpy()))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tokenizer.save_pretrained(folder)
    return path
