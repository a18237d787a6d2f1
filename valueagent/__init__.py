"""valueagent: read a model's value axis during generation, steer along it, and gate a coding agent on it.

Nothing heavy happens at import: torch and transformers load only when a model is used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
