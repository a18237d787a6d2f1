"""Sandboxed execution of model-written Python: isolated, bounded, and unable to fake a pass.

``Sandbox`` runs programs (``run``), visible test cases (``run_cases``) and hidden-test scoring
(``score_humaneval``) in a pool of isolated worker slots; every outcome is a result value. See
``docs/sandbox.md`` for the isolation levels and what each contains. Nothing runs at import.
"""

from valueagent.sandbox.detect import LevelReport, detect, probe
from valueagent.sandbox.programs import assemble_solution, humaneval_program, strip_fences
from valueagent.sandbox.results import (
    CaseResult,
    ExecResult,
    IsolationLevel,
    SandboxUnavailable,
    SandboxWarning,
    Status,
)
from valueagent.sandbox.sandbox import Case, Sandbox

__all__ = [
    "Case",
    "CaseResult",
    "ExecResult",
    "IsolationLevel",
    "LevelReport",
    "Sandbox",
    "SandboxUnavailable",
    "SandboxWarning",
    "Status",
    "assemble_solution",
    "detect",
    "humaneval_program",
    "probe",
    "strip_fences",
]
