"""The runtime's error type, in a module of its own: loading raises it and the embedded wheels subclass it."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says how to fix it."""
