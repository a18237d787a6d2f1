"""Serving a value-reading backend over HTTP, and the backend that talks to such a server.

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
    "HTTPBackend": "valueagent.serve.client",
    "connect_backend": "valueagent.serve.client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'valueagent.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
