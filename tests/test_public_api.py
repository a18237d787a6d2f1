"""The public API resolves, and importing the package imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys

import valueagent


def test_every_exported_name_resolves():
    for name in valueagent.__all__:
        assert getattr(valueagent, name) is not None, name


def test_import_is_light():
    code = "import sys, valueagent; print(any(m in sys.modules for m in ('torch', 'transformers', 'langgraph')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
