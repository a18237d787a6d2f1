"""Serving a value-reading backend over HTTP (the backend that talks to such a server is
:mod:`valueagent.runtime.http`).

Nothing is imported until a name is used (the server needs the ``serve`` extra: fastapi, uvicorn).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "create_app": "valueagent.serve.app",
    "ServeConfig": "valueagent.serve.app",
    "serve": "valueagent.serve.launch",
    "running": "valueagent.serve.launch",
    "check_bind": "valueagent.serve.launch",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'valueagent.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
