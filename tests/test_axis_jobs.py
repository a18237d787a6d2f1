"""Dataset -> text jobs: spans point at the right characters of the rendered chat; subsets are stratified."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from valueagent.axis import datasets as ds
from valueagent.axis import jobs

ROOT = Path(__file__).resolve().parents[1]
EPISODES = ROOT / "tasks/episodes/episodes.jsonl"
pytestmark = pytest.mark.skipif(not EPISODES.exists(), reason="frozen data not generated")


def _first(path: Path, pred=lambda r: True) -> dict:
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if pred(r):
            return r
    raise AssertionError("no record")


def _span_text(job, name):
    s = next(s for s in job.spans if s.name == name)
    return job.text[s.start:s.end]


@pytest.mark.parametrize("context", ["discovery", "full"])
def test_episode_spans_are_the_labelled_characters(tiny_tokenizer, context):
    ep = _first(EPISODES, lambda r: r["labels"] is not None)
    job = jobs.episode_job(tiny_tokenizer, ep, keep_tokens=True, context=context)
    content = ep["messages"][ep["labels"]["message_index"]]["content"]
    b0, b1 = ep["labels"]["before"]
    a0, a1 = ep["labels"]["after"]
    assert _span_text(job, "before") == content[b0:b1] and _span_text(job, "after") == content[a0:a1]
    assert job.text.endswith(content)
    if context == "discovery":
        full = jobs.episode_job(tiny_tokenizer, ep, keep_tokens=True, context="full")
        assert len(job.text) < len(full.text)


def test_code_and_distinction_spans(tiny_tokenizer):
    pair = _first(ROOT / "tasks/distinctions/code_pairs.jsonl")
    ok, bad = jobs.code_pair_jobs(tiny_tokenizer, pair)
    assert _span_text(ok, "code") == pair["correct"] and _span_text(bad, "code") == pair["mutant"]
    assert pair["correct"].endswith(_span_text(ok, "body")) and not _span_text(ok, "body").startswith("def ")
    conf = _first(ROOT / "tasks/distinctions/confidence.jsonl")
    c0, c1 = conf["claim_span"]
    assert _span_text(jobs.confidence_job(tiny_tokenizer, conf), "claim") == conf["completion"][c0:c1]
    bt = _first(ROOT / "tasks/distinctions/backtracking.jsonl", lambda r: r["variant"] == "backtrack")
    s0, s1 = bt["step_span"]
    assert _span_text(jobs.backtracking_job(tiny_tokenizer, bt), "step") == bt["completion"][s0:s1]


def test_stratified_round_robin_is_seeded_and_balanced():
    items = [f"{k}-{i}" for k in "abc" for i in range(10)]
    got = ds.stratified(items, 6, lambda x: x[0], seed=1)
    assert sorted(x[0] for x in got) == ["a", "a", "b", "b", "c", "c"]
    assert got == ds.stratified(items, 6, lambda x: x[0], seed=1) != ds.stratified(items, 6, lambda x: x[0], seed=2)
    assert len(ds.stratified(items, None, lambda x: x[0])) == 30
