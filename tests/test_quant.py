"""Int8 decoding (valueagent.runtime.quant): close to float, each row independent of its batch, prefills in float."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from tests.conftest import build_tiny_qwen3
from tests.test_backend import make_backend
from valueagent.runtime.generation import GenerationRequest
from valueagent.runtime.quant import Int8Linear, quantize_int8


def _linear(k: int = 96, n: int = 80, seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(k, n)


def test_decode_sized_products_are_close_to_float() -> None:
    lin = _linear()
    q = Int8Linear(lin)
    x = torch.randn(4, 1, 96)  # four sequences, one new position each: a decode step
    x[..., 3] *= 40  # an outlier channel, as residual streams have
    x[1, 0, 5] = x[1, 0].abs().max() * 2  # a row whose peak is positive: fbgemm maps it to byte 128
    qweight, _ = torch.ops.quantized.linear_unpack(q._packed)
    with torch.inference_mode():
        want, got = lin(x), q(x)
        on_grid = x @ qweight.dequantize().t() + lin.bias  # what int8 weights allow at best
    assert got.shape == want.shape and got.dtype == want.dtype
    # Two 7-bit passes leave at most 1/127^2 of the row's peak on each input (one pass: 1/127).
    peak = x.abs().amax(dim=-1, keepdim=True)
    bound = peak * qweight.dequantize().abs().sum(dim=1) / 127**2
    assert ((got - on_grid).abs() <= 1.01 * bound + 1e-5).all()
    assert 0 < (got - want).abs().max() < 0.01 * want.abs().max()  # int8 ran, and stayed close


def test_each_row_is_computed_the_same_whatever_the_batch() -> None:
    q = Int8Linear(_linear())
    row = torch.randn(1, 96)
    others = torch.randn(5, 96) * torch.tensor([[0.01], [1.0], [30.0], [300.0], [2.0]])
    with torch.inference_mode():
        alone = q(row)
        for batch in (torch.cat([row, others]), torch.cat([others[:2], row, others[2:]])):
            at = int((batch == row).all(dim=1).nonzero()[0, 0])
            assert torch.equal(q(batch)[at], alone[0])


def test_prompt_tokens_use_the_float_weights_exactly_and_generated_ones_int8() -> None:
    lin = _linear()
    q = Int8Linear(lin)
    prompt, step = torch.randn(2, 5, 96), torch.randn(40, 1, 96)  # (batch, positions, features)
    with torch.inference_mode():
        assert torch.equal(q(prompt), F.linear(prompt, lin.weight, lin.bias))
        assert not torch.equal(q(step), F.linear(step, lin.weight, lin.bias))  # however many rows
        assert torch.equal(q(step)[7], q(step[7:8])[0])


def test_zero_rows_and_layers_without_bias() -> None:
    lin = torch.nn.Linear(32, 16, bias=False)
    q = Int8Linear(lin)
    with torch.inference_mode():
        out = q(torch.zeros(2, 32))
    assert torch.equal(out, torch.zeros(2, 16))


def test_quantize_replaces_every_linear_and_keeps_the_model_close() -> None:
    plain, quant = build_tiny_qwen3(), build_tiny_qwen3()
    n_linear = sum(type(m) is torch.nn.Linear for m in plain.modules())
    assert quantize_int8(quant) == n_linear > 0
    assert not any(type(m) is torch.nn.Linear for m in quant.modules())
    assert type(quant.get_input_embeddings()) is torch.nn.Embedding  # the table stays float
    ids = torch.randint(0, plain.config.vocab_size, (3, 1))  # one position each: int8
    with torch.inference_mode():
        a, b = plain(input_ids=ids).logits, quant(input_ids=ids).logits
        prompt = torch.randint(0, plain.config.vocab_size, (2, 7))
        assert torch.equal(plain(input_ids=prompt).logits, quant(input_ids=prompt).logits)
    assert (a.argmax(-1) == b.argmax(-1)).all()
    assert (a - b).abs().max() < 0.02 * a.abs().max()


def test_a_single_input_feature_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 input features"):
        Int8Linear(torch.nn.Linear(1, 4))


def test_quantize_refuses_a_model_off_the_cpu() -> None:
    model = build_tiny_qwen3().to("meta")
    with pytest.raises(ValueError, match="CPU kernels only"):
        quantize_int8(model)


def test_int8_backend_batches_like_it_decodes_alone(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    plain, quant = build_tiny_qwen3(), build_tiny_qwen3()
    quantize_int8(quant)
    texts = ("def add(a, b):\n", "Write a function", "import os\n", "for i in range(10):")
    reqs = [GenerationRequest(prompt=t, max_new_tokens=10, ignore_eos=True) for t in texts]

    def together(model, **kw):  # type: ignore[no-untyped-def]
        backend = make_backend(model, tiny_tokenizer, prefix_cache_mb=0, **kw)

        async def go():  # type: ignore[no-untyped-def]
            return await asyncio.gather(*(backend.generate(r) for r in reqs))

        try:
            return asyncio.run(go())
        finally:
            backend.close()

    batched = together(quant, max_batch=4, batch_window_s=0.2)
    solo = together(quant, max_batch=1)
    reference = together(plain, max_batch=4, batch_window_s=0.2)
    for b, s, r in zip(batched, solo, reference, strict=True):
        assert b.token_ids == s.token_ids  # rows do not see each other's quantization
        np.testing.assert_allclose(b.values, s.values, atol=1e-4)
        assert len(b.values) == len(b.token_ids) == 10
        np.testing.assert_allclose(b.logprobs[:1], r.logprobs[:1], atol=0.05)  # first token: same prompt


@pytest.fixture
def tiny_dir(tmp_path: Path, tiny_model, tiny_tokenizer) -> Path:  # type: ignore[no-untyped-def]
    tiny_model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    return tmp_path


def test_load_model_quantizes_on_request_and_records_it(tiny_dir: Path) -> None:
    from valueagent.runtime.loading import load_model

    loaded = load_model(str(tiny_dir), device="cpu", quantize="int8")
    assert (loaded.quantization, loaded.dtype) == ("int8", "float32")
    assert any(type(m) is Int8Linear for m in loaded.model.modules())
    assert load_model(str(tiny_dir), device="cpu").quantization is None


def test_int8_loads_in_float32_where_bf16_would_be_the_default(tiny_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from valueagent.runtime import loading

    monkeypatch.setattr(loading, "cpu_has_fast_bf16", lambda: True)
    assert loading.default_dtype("cpu") == "bfloat16"
    loaded = loading.load_model(str(tiny_dir), device="cpu", quantize="int8")
    assert (loaded.quantization, loaded.dtype) == ("int8", "float32")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantize": "int4"}, "unknown quantization 'int4'; use one of int8"),
        ({"quantize": "int8", "dtype": "bfloat16"}, "computes in float32; drop --dtype"),
    ],
)
def test_unusable_quantization_fails_before_loading(tmp_path: Path, kwargs: dict, message: str) -> None:
    from valueagent.runtime.loading import load_model

    with pytest.raises(ValueError, match=message):  # tmp_path holds no model: loading never started
        load_model(str(tmp_path), device="cpu", **kwargs)


def test_cli_reports_the_quantization(tiny_dir: Path) -> None:
    from valueagent.cli.main import app

    res = CliRunner().invoke(app, ["model", "info", "--model", str(tiny_dir), "--axis", "none", "--quantize",
                                   "int8", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["quantization"] == "int8"
    bad = CliRunner().invoke(app, ["model", "info", "--model", str(tiny_dir), "--quantize", "int3"])
    assert bad.exit_code != 0 and "unknown quantization 'int3'" in bad.output


def test_resume_refuses_to_mix_float_and_int8_results() -> None:
    from valueagent.eval.config import ConfigMismatchError, check_resume

    run = {"model": {"model_id": "m", "dtype": "float32"}}  # written before quantization was recorded
    check_resume(run, {"model": {"model_id": "m", "dtype": "float32", "quantization": None}})
    with pytest.raises(ConfigMismatchError, match=r"model\.quantization: None \(run\) vs 'int8' \(now\)"):
        check_resume(run, {"model": {"model_id": "m", "dtype": "float32", "quantization": "int8"}})


def test_backend_benchmark_names_the_precision_it_measured(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from valueagent.runtime.benchmark import run_bench

    model = build_tiny_qwen3()
    quantize_int8(model)
    backend = make_backend(model, tiny_tokenizer, quantization="int8")
    try:
        report = run_bench(backend, tokens=8, repeats=1)
    finally:
        backend.close()
    assert (report["dtype"], report["quantization"]) == ("float32", "int8")
    assert report["plain_tok_s"] > 0 and report["read_tok_s"] > 0
