"""Result values of the sandbox: what a run returns instead of raising."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["passed", "failed", "timeout", "memory", "output_limit", "error"]


class IsolationLevel(enum.IntEnum):
    """How strongly a run is isolated from the host; a larger value is stronger.

    - ``BWRAP``: bubblewrap launched as a dedicated unprivileged uid: every namespace (no network,
      own pid space, only ``/usr`` mounted read-only, size-capped tmpfs work dir).
    - ``UNSHARE``: ``unshare`` namespaces (no network, own pid space, read-only ``/``, private tmpfs
      ``/tmp``) and the program drops to a dedicated unprivileged uid.
    - ``UID``: a dedicated unprivileged uid and resource limits; no namespaces.
    - ``RLIMITS``: resource limits only; the program runs as the calling user.
    """

    RLIMITS = 1
    UID = 2
    UNSHARE = 3
    BWRAP = 4

    @property
    def label(self) -> str:
        """The lower-case name recorded in results (``"bwrap"``, ...)."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: IsolationLevel | str) -> IsolationLevel:
        """Accept a level or its name, case-insensitively."""
        if isinstance(value, IsolationLevel):
            return value
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(level.label for level in cls)
            raise ValueError(f"unknown isolation level {value!r}; use one of: {names}") from None


class SandboxUnavailable(RuntimeError):
    """No isolation level at least as strong as the one required works on this machine."""


class SandboxWarning(UserWarning):
    """The sandbox runs below its strongest level on this machine."""


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one sandboxed execution.

    ``status`` is ``passed`` only when the trusted runner saw the program run to its end and wrote
    this run's secret nonce afterwards; an exit code of 0 alone (``sys.exit(0)``, ``os._exit(0)``)
    is ``failed``. ``returncode`` is the program's exit status (negative: killed by that signal),
    or ``None`` when it was stopped from outside. ``detail`` says why, in one line.
    """

    status: Status
    returncode: int | None
    duration_s: float
    stdout: str
    stderr: str
    isolation: str
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CaseResult:
    """One visible test case: ``call`` evaluated after the solution, compared with ``expected``.

    ``got`` is the ``repr`` of the value the solution returned (``None`` when it returned nothing
    usable); ``error`` says why the case failed or did not run; ``output`` is what the solution
    printed during the case (capped).
    """

    call: str
    expected: str
    passed: bool
    got: str | None
    error: str | None
    output: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
