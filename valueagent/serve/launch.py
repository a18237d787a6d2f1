"""Running the server: the bind rule (loopback, or a token), ``serve`` for the command line, and
``running`` for tests and benchmarks (a real uvicorn server on a free loopback port, in a thread)."""

from __future__ import annotations

import ipaddress
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

TOKEN_ENV = "VALUEAGENT_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token: the server runs any prompt it is sent."""
    if not is_loopback(host) and not token:
        raise ValueError(f"binding {host} exposes the model beyond this machine: give a bearer token with --token "
                         f"or the {TOKEN_ENV} environment variable (or bind 127.0.0.1)")


def serve(app: Any, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          log_level: str = "info", graceful_s: int = 30) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; on either, uvicorn stops accepting and lets requests in flight
    finish (up to ``graceful_s``). After SIGTERM this returns (the process exits 0)."""
    import uvicorn

    check_bind(host, token)
    # uvicorn re-raises the signal it stopped on once it has shut down; SIGTERM's default action would then
    # kill the process before its caller closes the backend. Ignoring that echo lets serve return.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _ignore) if main else None
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=graceful_s)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM after uvicorn's own handler was removed: the graceful shutdown already ran."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def running(app: Any, *, host: str = "127.0.0.1", port: int | None = None, timeout_s: float = 30.0) -> Iterator[str]:
    """A real server for ``app`` in a background thread; yields its base URL and stops it on exit."""
    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="valueagent-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server on {host}:{port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)
