"""Span activations: offsets -> tokens, batched equals unbatched, position 0 excluded, the cache."""

from __future__ import annotations

import numpy as np
import torch

from valueagent.axis.activations import Span, TextJob, gather, token_spans

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "The quick brown fox jumps over the lazy dog.",
    "I am confident this is correct. Wait, that is wrong; let me check again.",
]


def _jobs(keep: bool = True) -> list[TextJob]:
    return [TextJob(key=str(i), text=t, spans=(Span("all", 0, len(t), keep), Span("tail", 8, len(t))))
            for i, t in enumerate(TEXTS)]


def test_token_spans_ignore_glued_whitespace_and_position_zero(tiny_tokenizer):
    text = "The quick brown fox"
    enc = tiny_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    everything = token_spans(offsets, text, 0, len(text))
    assert 0 not in everything and everything == list(range(1, len(offsets)))
    start = text.index("brown")
    inside = token_spans(offsets, text, start, len(text))
    pieces = "".join(text[offsets[i][0]:offsets[i][1]] for i in inside)
    assert pieces.strip().startswith("brown") and "quick" not in pieces


def test_gather_matches_hidden_states_and_batching(tiny_model, tiny_tokenizer):
    single = gather(tiny_model, tiny_tokenizer, _jobs(), batch_size=1, progress=None)
    batched = gather(tiny_model, tiny_tokenizer, _jobs(), batch_size=3, progress=None)
    for a, b in zip(single, batched, strict=True):
        np.testing.assert_allclose(a.spans["all"].mean, b.spans["all"].mean, atol=1e-4)
        np.testing.assert_allclose(a.spans["all"].logprobs, b.spans["all"].logprobs, atol=1e-4)
    ids = tiny_tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = tiny_model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    hs = torch.stack(out.hidden_states)[:, 0].float()  # (L+1, T, H)
    s = single[0].spans["all"]
    assert s.n_tokens == len(ids) - 1  # position 0 excluded
    np.testing.assert_allclose(s.mean, hs[:, 1:].mean(1).numpy(), atol=1e-5)
    lp = torch.log_softmax(out.logits[0].float(), -1)
    np.testing.assert_allclose(s.logprobs, [float(lp[i - 1, ids[i]]) for i in range(1, len(ids))], atol=1e-4)
    unit = hs[:, 1:] / hs[:, 1:].norm(dim=-1, keepdim=True)
    np.testing.assert_allclose(s.mean_unit, unit.mean(1).numpy(), atol=1e-5)
    assert single[0].spans["tail"].tokens is None and s.tokens.shape == (len(ids) - 1, 3, 64)


def test_cache_resumes(tiny_model, tiny_tokenizer, tmp_path):
    first = gather(tiny_model, tiny_tokenizer, _jobs(), cache_dir=tmp_path, progress=None)
    assert len(list(tmp_path.glob("*.npz"))) == len(TEXTS)
    again = gather(tiny_model, tiny_tokenizer, _jobs(), cache_dir=tmp_path, progress=None)
    for a, b in zip(first, again, strict=True):
        assert a.spans.keys() == b.spans.keys()
        np.testing.assert_array_equal(a.spans["all"].mean_unit, b.spans["all"].mean_unit)
        np.testing.assert_array_equal(a.spans["all"].tokens, b.spans["all"].tokens)
