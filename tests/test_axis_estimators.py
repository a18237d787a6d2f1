"""Estimators recover planted directions: in a tiny random model, and in synthetic activations."""

from __future__ import annotations

import random

import numpy as np
import torch

from valueagent.axis.activations import Span, TextJob, gather
from valueagent.axis.estimators import diff_of_means, fit_probe, logistic_fit, matched_contrast, unit
from valueagent.axis.validate import matched_auroc, paired

WORDS_BEFORE = ["quick", "brown", "fox", "lazy", "dog", "list", "numbers", "sum"]
WORDS_AFTER = ["print", "range", "return", "function", "confident", "correct", "check", "again"]


def _episodes(n: int, seed: int = 0) -> tuple[list[TextJob], list[int]]:
    rng = random.Random(seed)
    jobs, groups = [], []
    for i in range(n):
        before = " ".join(rng.choice(WORDS_BEFORE) for _ in range(12))
        after = " ".join(rng.choice(WORDS_AFTER) for _ in range(12))
        text = f"Hello {before} {after}"
        b0 = len("Hello ")
        a0 = b0 + len(before) + 1
        jobs.append(TextJob(str(i), text, (Span("before", b0, a0 - 1), Span("after", a0, len(text)))))
        groups.append(i % 4)
    return jobs, groups


def test_planted_direction_is_recovered(tiny_model, tiny_tokenizer):
    """Tokens of the 'after' words carry +k*d in their embeddings; the estimator finds d at layer 1+."""
    torch.manual_seed(0)
    d = torch.randn(tiny_model.config.hidden_size)
    d = d / d.norm()
    emb = tiny_model.get_input_embeddings().weight
    after_ids = {t for w in WORDS_AFTER for t in tiny_tokenizer(" " + w, add_special_tokens=False)["input_ids"]}
    with torch.no_grad():
        scale = float(emb.norm(dim=-1).mean())
        for t in after_ids:
            emb[t] += 3 * scale * d
    jobs, groups = _episodes(24)
    acts = gather(tiny_model, tiny_tokenizer, jobs, batch_size=8, progress=None)
    after = np.stack([a.spans["after"].mean for a in acts])
    before = np.stack([a.spans["before"].mean for a in acts])
    v = diff_of_means(after, before, groups)  # (L+1, H)
    cos = unit(v) @ d.numpy()
    assert cos[0] > 0.9 and cos[1] > 0.7, cos
    rng = np.random.default_rng(0)
    assert abs(unit(rng.standard_normal(v.shape[1])) @ d.numpy()) < 0.5


def test_matched_contrast_cancels_shared_content():
    rng = np.random.default_rng(0)
    content = rng.standard_normal((40, 2, 32)) * 5  # identical tokens in both contexts
    d = unit(rng.standard_normal(32))
    succ = content + 0.5 * d + 0.05 * rng.standard_normal(content.shape)
    fail = content - 0.5 * d + 0.05 * rng.standard_normal(content.shape)
    v = matched_contrast(succ, fail, groups=np.arange(40) % 5)
    assert (unit(v) @ d > 0.99).all()
    assert paired(succ[:, 0] @ d, fail[:, 0] @ d)["win_rate"] == 1.0


def test_probe_recovers_planted_direction_crossfitted():
    rng = np.random.default_rng(1)
    n, h = 120, 48
    d = unit(rng.standard_normal(h))
    y = rng.random(n) < 0.5
    x = rng.standard_normal((n, 2, h))
    x[:, 1] += np.where(y, 1.5, -1.5)[:, None] * d
    fit = fit_probe(x, y, groups=np.arange(n) // 3)
    assert fit.oof_auroc[1] > 0.9 and fit.oof_auroc[0] < 0.75
    assert unit(fit.directions[1]) @ d > 0.8


def test_logistic_fit_in_row_space_matches_primal_gradient_condition():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 80))
    y = (rng.random(30) < 0.5).astype(float)
    lam = 0.5
    w, b = logistic_fit(x, y, lam)
    p = 1 / (1 + np.exp(-(x @ w + b)))
    grad = x.T @ (p - y) + lam * w  # stationarity of the penalized objective
    assert np.abs(grad).max() < 1e-5 and abs(float((p - y).sum())) < 1e-5


def test_matched_auroc_removes_a_pure_position_effect():
    rng = np.random.default_rng(3)
    pos = rng.random(4000)
    label = rng.random(4000) < pos  # later tokens are more often "after"
    score = pos + 0.01 * rng.standard_normal(4000)  # a reading that only knows position
    from valueagent.axis.validate import position_bins, safe_auroc

    assert safe_auroc(score, label) > 0.7
    assert abs(matched_auroc(score, label, position_bins(pos, 20)) - 0.5) < 0.06
