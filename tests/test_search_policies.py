"""The policy registry, a policy from outside the package through the CLI, custom gates, and branching at
the most uncertain token (tiny random Qwen3 where per-token entropies matter)."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.agent_helpers import TASK
from tests.fakes import ScriptedSandbox
from tests.test_backend import make_axis
from valueagent.agent import GateConfig, agent_input, create_value_agent
from valueagent.agent.gate import GateInput, GateOutcome
from valueagent.agent.policies import PolicySpec, policy_names, policy_spec, register_policy
from valueagent.runtime.backend import HFBackend
from valueagent.runtime.generation import Generation, GenerationRequest

ISSUE_NAMES = ("value-rank", "logprob-rank", "confidence-rank", "probe-rank", "random-rank", "value-seq",
               "logprob-seq", "value-branch", "logprob-branch", "value-stop", "confidence-stop")
ORIGINAL = ("single", "always-test", "value", "steer-high", "steer-low", "random-gate", "logprob-gate",
            "value+logprob")


def test_every_named_policy_is_registered_and_the_originals_keep_their_names() -> None:
    from valueagent.agent.policies import control_pairs

    names = policy_names()
    assert set(ISSUE_NAMES) <= set(names) and set(ORIGINAL) <= set(names)  # registration order: pair order
    assert policy_spec("value-rank").reads_value and not policy_spec("logprob-rank").reads_value
    assert policy_spec("value-seq").needs_calibration and not policy_spec("random-rank").needs_calibration
    with pytest.raises(ValueError, match="already registered"):
        register_policy(PolicySpec(name="value", signal="value", tests="gate", segmented=True))
    with pytest.raises(ValueError, match="unknown policy 'nope'.*--plugin"):
        policy_spec("nope")
    # the pairs every summary reports come from the specs, in the order they were always reported
    assert control_pairs() == (
        ("value", "random-gate"), ("value", "logprob-gate"), ("value", "always-test"),
        ("value+logprob", "logprob-gate"), ("value-branch", "random-branch"), ("value-branch", "logprob-branch"),
        ("steer-high", "always-test"), ("steer-low", "always-test"), ("value-rank", "random-rank"),
        ("value-rank", "logprob-rank"), ("value-seq", "logprob-seq"), ("value-stop", "confidence-stop"))


class Recording:
    """A backend proxy that keeps every request and result (to check what a branch asked for)."""

    def __init__(self, inner: HFBackend) -> None:
        self.inner, self.calls = inner, []

    def info(self) -> Any:
        return self.inner.info()

    async def generate(self, request: GenerationRequest) -> Generation:
        gen = await self.inner.generate(request)
        self.calls.append((request, gen))
        return gen

    async def score(self, messages: Any, completion: str) -> Any:
        return await self.inner.score(messages, completion)

    async def aclose(self) -> None:
        return None


async def test_branch_cuts_before_the_most_uncertain_token_and_never_retakes_it(tiny_model: Any,
                                                                               tiny_tokenizer: Any) -> None:
    backend = Recording(HFBackend(tiny_model, tiny_tokenizer, model_id="tiny", axis=make_axis(tiny_model)))
    gate = GateConfig(backtrack_below=10.0, min_tokens=1)  # every segment reads low: branch once
    from valueagent.agent import Budgets

    graph = create_value_agent(backend, policy="value-branch", sandbox=ScriptedSandbox(), gate_config=gate,
                               budgets=Budgets(backtracks=1, tokens=96), segment_tokens=8,
                               answer_tokens=24).compile()
    await graph.ainvoke(agent_input(TASK.public(), seed=3))
    (req0, gen0), (req1, gen1) = backend.calls[:2]
    assert req1.exclude_first, "the call after the branch must exclude the token it cut at"
    (excluded,) = req1.exclude_first
    # the gate read the first segment (8 tokens) low: the cut is its highest-entropy token, earliest on ties
    ent = [round(e, 6) for e in gen0.entropies]
    k = max(range(len(ent)), key=lambda i: (ent[i], -i))
    assert excluded == gen0.token_ids[k]
    assert req1.assistant_prefix == req0.assistant_prefix + "".join(gen0.tokens[:k])
    assert gen1.token_ids[0] != excluded
    backend.inner.close()


async def test_create_value_agent_takes_a_custom_gate() -> None:
    from tests.fakes import ScriptedBackend

    seen: list[str] = []

    def my_gate(inp: GateInput) -> GateOutcome:
        seen.append(inp.kind)
        return GateOutcome(verdict="accept" if inp.kind == "final" else "continue", score=1.0, drop=None,
                           reason="mine")

    from tests.fakes import Step

    backend = ScriptedBackend(lambda request, i: Step("def f(x):\n    return x + 1\n```", [0.1] * 4, None, "stop"))
    graph = create_value_agent(backend, policy="value", sandbox=ScriptedSandbox(), gate=my_gate).compile()
    out = await graph.ainvoke(agent_input(TASK.public(), seed=1))
    assert "final" in seen and out["used"]["test_runs"] == 0 and "mine" in out["stop_reason"]


PLUGIN = textwrap.dedent('''
    from valueagent.agent.gate import GateOutcome
    from valueagent.agent.policies import PolicySpec, register_policy

    def always_accept(inp):
        return GateOutcome(verdict="accept" if inp.kind == "final" else "continue", score=0.5, drop=None,
                           reason="plugin gate")

    register_policy(PolicySpec(name="my-accept", signal="logprob", tests="gate", segmented=True,
                               gate=always_accept, description="a policy from outside the package"))
''')


def test_a_policy_registered_outside_the_package_runs_through_run_and_eval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes import ScriptedBackend
    from valueagent.cli import agent_cmd, eval_cmd
    from valueagent.cli.main import app

    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "my_policies.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "plug"))
    from tests.fakes import Step

    script = lambda request, i: Step("def f(x):\n    return x + 1\n```", [0.5] * 4, None, "stop")  # noqa: E731
    monkeypatch.setattr(agent_cmd, "load_backend_or_fail", lambda *a, **k: ScriptedBackend(script))
    monkeypatch.setattr(eval_cmd, "make_backend", lambda *a, **k: ScriptedBackend(script))
    monkeypatch.setattr("valueagent.sandbox.Sandbox", lambda workers=4: ScriptedSandbox())
    monkeypatch.setattr(eval_cmd, "make_sandbox", lambda *a, **k: ScriptedSandbox(), raising=False)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps(TASK.to_dict()) + "\n")
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(tasks), "--policy", "my-accept", "--output-dir", str(tmp_path / "r")])
    assert res.exit_code == 2 and "unknown policy my-accept" in res.output  # not loaded: a clear refusal
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = runner.invoke(app, ["--plugin", "my_policies", "run", str(tasks), "--policy", "my-accept",
                                  "--output-dir", str(tmp_path / "r"), "--model", "fake/scripted"])
        assert res.exit_code == 0, res.output
        rec = json.loads((tmp_path / "r" / "results.jsonl").read_text().splitlines()[0])
        assert rec["policy"] == "my-accept" and "plugin gate" in rec["stop_reason"]
        monkeypatch.setenv("VALUEAGENT_PLUGINS", "my_policies")
        res = runner.invoke(app, ["eval", "humaneval", "--split", "eval", "--limit", "1", "--policies", "my-accept",
                                  "--output-dir", str(tmp_path / "e"), "--model", "fake/scripted", "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "e" / "results.jsonl").read_text().splitlines()[0])
    assert rec["policy"] == "my-accept"


def test_a_search_policy_without_its_calibration_is_refused_before_the_model_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from valueagent.cli import agent_cmd
    from valueagent.cli.main import app

    monkeypatch.setattr(agent_cmd, "load_backend_or_fail", lambda *a, **k: pytest.fail("the model was loaded"))
    # The default calibration ships the search thresholds (test_gate_defaults); a variant without them refuses.
    res = CliRunner().invoke(app, ["run", "humaneval", "--split", "eval", "--limit", "1", "--policy", "value-seq",
                                   "--gate-config", "with-repeats", "--output-dir", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "no search calibration for value-seq" in lines[0] and "--gate-config-out" in lines[0]
    assert not (tmp_path / "r").exists()
