"""`bank encode`: the shared-prompt pass gives the same residuals as one full pass per sample, on a real
(tiny random Qwen3) model; features are refused when missing or made from another bank."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from valueagent.bank.encode import check_encoded, encode_bank, features_manifest, load_features
from valueagent.bank.store import Bank, BankError, BankManifest, write_manifest

from .conftest import build_tiny_qwen3


def _bank(root: Path, rows: list[list[int]]) -> Bank:
    manifest = BankManifest(model_id="tiny", revision="r1", weights="w", dtype="float32", quantization=None,
                            axis=None, axis_layer=None, axis_sha256=None, samples=len(rows) - 1, temperature=0.8,
                            top_p=0.95, seed=0, seed_rule="r", max_new_tokens=8, prefill="", stop=(), top_k=5,
                            tasks_source="t")
    write_manifest(root, manifest)
    record = {"task_id": "Mbpp/11", "prompt_tokens": 7, "samples": [{"token_ids": r} for r in rows]}
    return Bank(root, manifest, (record,))


def test_shared_prompt_pass_equals_a_full_pass_per_sample(tmp_path: Path, tiny_tokenizer: Any) -> None:
    model = build_tiny_qwen3(num_layers=3)
    prompt = [5, 17, 23, 99, 4, 8, 61]
    rows = [[11, 12, 13, 14, 15], [40], [], [7, 7, 7]]
    bank = _bank(tmp_path, rows)
    loaded = SimpleNamespace(model_id="tiny", revision="r1", model=model, tokenizer=tiny_tokenizer, weights="w")
    written, skipped = encode_bank(bank, loaded=loaded, prompt_ids=lambda _: prompt)
    assert (written, skipped) == (1, 0)
    feats = load_features(tmp_path, "Mbpp/11")
    assert feats.mean.shape == (4, 4, 64) and feats.mean.dtype == np.float16
    assert feats.n_tokens.tolist() == [5, 1, 0, 3]
    with torch.inference_mode():
        for i, row in enumerate(rows):
            if not row:
                assert not feats.mean[i].any() and not feats.last[i].any()
                continue
            hs = torch.stack(model(input_ids=torch.tensor([prompt + row]), output_hidden_states=True).hidden_states)
            gen = hs[:, 0, len(prompt):, :]  # (L+1, n, H): the generated tokens' own positions
            np.testing.assert_allclose(feats.mean[i], gen.mean(1).numpy(), rtol=2e-2, atol=2e-3)
            np.testing.assert_allclose(feats.last[i], gen[:, -1].numpy(), rtol=2e-2, atol=2e-3)
    assert encode_bank(bank, loaded=loaded, prompt_ids=lambda _: prompt) == (0, 1)  # resumes: nothing redone


def test_features_of_another_model_or_bank_are_refused(tmp_path: Path, tiny_tokenizer: Any) -> None:
    bank = _bank(tmp_path, [[1, 2], [3]])
    with pytest.raises(BankError, match="no residual features: run `valueagent bank encode"):
        features_manifest(tmp_path)
    other = SimpleNamespace(model_id="other", revision="r1", model=build_tiny_qwen3(), tokenizer=tiny_tokenizer)
    with pytest.raises(BankError, match="sampled from tiny.*encode it with the bank's own model"):
        encode_bank(bank, loaded=other, prompt_ids=lambda _: [1, 2, 3, 4, 5, 6, 7])
    loaded = SimpleNamespace(model_id="tiny", revision="r1", model=build_tiny_qwen3(), tokenizer=tiny_tokenizer)
    with pytest.raises(BankError, match="prompt encodes to 3 tokens, the bank recorded 7"):
        encode_bank(bank, loaded=loaded, prompt_ids=lambda _: [1, 2, 3])
    encode_bank(bank, loaded=loaded, prompt_ids=lambda _: [1, 2, 3, 4, 5, 6, 7])
    check_encoded(tmp_path, ["Mbpp/11"])
    with pytest.raises(BankError, match="not encoded"):
        check_encoded(tmp_path, ["Mbpp/11", "Mbpp/12"])
    (tmp_path / "bank.json").write_text((tmp_path / "bank.json").read_text().replace('"seed": 0', '"seed": 1'))
    with pytest.raises(BankError, match="another bank manifest"):
        features_manifest(tmp_path)


def test_reverse_encodes_last_task_first_and_skips_what_another_encoder_wrote(tmp_path: Path,
                                                                               tiny_tokenizer: Any) -> None:
    model = build_tiny_qwen3(num_layers=3)
    one = _bank(tmp_path, [[11, 12], [13]])
    bank = Bank(tmp_path, one.manifest, tuple({**one.tasks[0], "task_id": f"Mbpp/{n}"} for n in (11, 12, 13)))
    loaded = SimpleNamespace(model_id="tiny", revision="r1", model=model, tokenizer=tiny_tokenizer, weights="w")
    order: list[str] = []
    encode_bank(bank.subset({"Mbpp/11"}), loaded=loaded, prompt_ids=lambda _: [1, 2, 3, 4, 5, 6, 7])  # "the other"
    written, skipped = encode_bank(bank, loaded=loaded, prompt_ids=lambda _: [1, 2, 3, 4, 5, 6, 7], reverse=True,
                                   on_task=lambda p: order.append(p["last"]))
    assert (written, skipped) == (2, 1) and order == ["Mbpp/13", "Mbpp/12"]
