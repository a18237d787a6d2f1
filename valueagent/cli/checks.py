"""Checks of a command's inputs, made before any model loads.

Each check returns the parsed input or ends the command with one line naming the input and the fix
(:func:`~valueagent.cli.common.fail`: exit code 2; ``--debug`` adds the traceback). None of them writes
anything, so a refused command leaves every file as it was.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from valueagent.cli.common import fail

if TYPE_CHECKING:
    from valueagent.runtime.generation import ModelInfo
    from valueagent.tasks import Task

STEER_LIMIT = 1.0
"""Largest ``|--steer|``: the fraction of the mean residual norm added along the axis. The shipped
comparisons use 0.168; past 1 the added vector outweighs the model's own state and the text degrades."""


def split(name: str | None, source: str = "humaneval") -> str:
    """The ``--split`` of a named benchmark (its eval split when not given); a bad name fails in one line."""
    from valueagent.benchmarks import BENCHMARKS

    bench = BENCHMARKS.get(source)
    if bench is None:
        return name or "all"
    try:
        return bench.check_split(name or bench.eval_split)
    except ValueError as exc:
        fail(str(exc))


def plugins(modules: Sequence[str]) -> None:
    """Import policy plugins (``--plugin``, ``$VALUEAGENT_PLUGINS``, entry points) so their names resolve."""
    from valueagent.agent.policies import load_policy_plugins

    try:
        load_policy_plugins(modules)
    except ValueError as exc:
        fail(str(exc))


def policies(text: str, *, option: str = "--policies") -> tuple[str, ...]:
    """Comma-separated registered policy names, in order, each once."""
    from valueagent.agent.policies import policy_names

    known = policy_names()
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if bad := [p for p in names if p not in known]:
        fail(f"{option}: unknown policy {', '.join(bad)}; choose from {', '.join(known)} (comma-separated "
             "for several; your own: --plugin MODULE)")
    if not names:
        fail(f"{option} is empty; e.g. {option} value,always-test,single")
    return names


def task_file(source: str) -> tuple[Task, ...]:
    """The tasks of a HumanEval-schema JSONL file; a bad line is named with its number and what is wrong."""
    from valueagent.tasks import TaskFormatError, load_jsonl

    path = Path(source)
    if not path.is_file():
        fail(f"no task file {source!r}: give a HumanEval-schema .jsonl file or `humaneval`")
    try:
        tasks = load_jsonl(path)
    except TaskFormatError as exc:
        fail(f"{exc} (fix that line of the task file)")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        fail(f"cannot read task file {source}: {exc}; give a UTF-8 HumanEval-schema .jsonl (or .jsonl.gz) file")
    if not tasks:
        fail(f"task file {source} has no tasks: write one JSON task per line (task_id, prompt, entry_point, test)")
    return tasks


def axis(value: str | None, *, option: str = "--axis", model: str | None = None, cosine_only: str = "") -> None:
    """``--axis``: ``default``, ``head``, ``none`` or a readable value-axis file, made for ``model`` when the spec
    tells which model it is without loading it (an embedded name, a folder); its shape is checked once loaded.
    ``cosine_only`` (what the command measures) refuses a linear-read head."""
    from valueagent.runtime.artifact import load_axis

    if value in (None, "", "none", "default"):
        return
    if value == "head":
        from valueagent.agent.shipped import expected_model_id
        from valueagent.runtime.artifact import axis_path

        want = expected_model_id(model) if model is not None else None
        if want is not None:
            try:
                head = axis_path(want, "head")
            except FileNotFoundError as exc:  # axis_path's own message names how to make one
                fail(f"{option} head: {exc}")
            if cosine_only and head is not None:
                cosine_only_axis(load_axis(head), option, value, cosine_only)
        return

    hint = "pass a file from `valueagent axis build`, `default` (the shipped axis), `head` or `none`"
    path = Path(value)
    if not path.is_file():
        fail(f"{option} {value}: no such file; {hint}")
    try:
        loaded = load_axis(path)
    except ValueError as exc:  # load_axis's own messages name the file and the fix
        fail(f"{option} {value}: {exc}")
    except Exception as exc:  # safetensors' errors are not ValueErrors (e.g. "header too large")
        fail(f"{option} {value} is not a value axis file ({type(exc).__name__}: {exc}); {hint}")
    if model is not None:
        from valueagent.agent.shipped import expected_model_id
        from valueagent.runtime.embedded import SOURCES

        want = expected_model_id(model)
        if model in SOURCES and want is not None and loaded.model_id != want:
            fail(f"{option} {value} was made for {loaded.model_id} (hidden size {loaded.hidden_size}, layer "
                 f"{loaded.layer}), not {want}: pass an axis of this model, or --model for that one")
    if cosine_only:
        cosine_only_axis(loaded, option, value, cosine_only)


def cosine_only_axis(loaded: Any, option: str, value: str, what: str) -> None:
    """Refuse a linear-read head where ``what`` measures cosines."""
    if loaded.reading != "cosine":
        fail(f"{option} {value} is a value head read as a {loaded.reading} logit ({loaded.estimator}); {what} "
             "measures a cosine-read axis: judge a head with `valueagent bank heads` and `bank replay --scores`, "
             "or pass a contrastive axis")


def existing(path: Path, *, option: str, what: str) -> None:
    """An input file or directory the command reads (``what`` says which, e.g. "the frozen episodes")."""
    if not path.exists():
        fail(f"{option} {path}: not found ({what}); pass its path, or run from the folder it is relative to")


def gate_config(path: Path | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``--gate-config``: the per-policy gate configs and the document of a calibration file, or None."""
    if path is None:
        return None
    from valueagent.agent.calibrate import load_gate_configs

    hint = "pass a file made by `valueagent calibrate`"
    if not path.is_file():
        fail(f"--gate-config {path}: no such file; {hint}")
    try:
        return load_gate_configs(path)
    except json.JSONDecodeError as exc:
        fail(f"--gate-config {path} is not JSON ({exc}); {hint}")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--gate-config {path} cannot be read ({exc}); {hint}")
    except ValueError as exc:
        fail(f"--gate-config {exc}")
    except (AttributeError, KeyError, TypeError) as exc:
        fail(f"--gate-config {path} is not a complete calibration file ({type(exc).__name__}: {exc}); {hint}")


def directory(path: Path, *, option: str) -> None:
    """A directory the command writes into: it may not exist yet, but neither it nor a parent is a file."""
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            fail(f"{option} {path}: {p} is a file, not a directory; choose another {option}")


def output_dir(path: Path, *, resume: bool) -> None:
    """``--output-dir``: a directory (or none yet) whose earlier results a run without ``--resume`` keeps."""
    from valueagent.eval.records import RESULTS_FILE

    directory(path, option="--output-dir")
    results = path / RESULTS_FILE
    if results.is_file() and results.stat().st_size and not resume:
        fail(f"--output-dir {path} already has results ({results}): pass --resume to continue that run, "
             "or choose another --output-dir")


def steer(value: float) -> float:
    """``--steer``: a finite fraction of the mean residual norm within ``±STEER_LIMIT``."""
    if not math.isfinite(value):
        fail(f"--steer {value} is not a finite number: give a fraction of the residual norm, e.g. 0.1")
    if abs(value) > STEER_LIMIT:
        fail(f"--steer {value:g} is beyond ±{STEER_LIMIT:g}: it is a fraction of the mean residual norm "
             "(0.168 = 16.8%, as in the shipped comparisons); past 1 it drowns the model's own state")
    return value


def no_axis_fix(model: str, info: ModelInfo) -> str:
    """How to give a backend a value axis: build or import one, then load it (on the server for a URL)."""
    target = info.model_id if model.startswith(("http://", "https://")) else model
    use = "restart `valueagent serve` with --axis PATH" if target != model else "pass --axis PATH"
    return (f"build one (`valueagent axis build --model {target}`) or import one (`valueagent axis import "
            f"ARRAY.npy --model {info.model_id}`), then {use}")


def axis_reading(names: Sequence[str], info: ModelInfo, *, model: str) -> None:
    """Made right after the model loads, before any task runs: a policy that reads or steers along the value
    refuses a backend without an axis (it would otherwise run as an always-test agent, reading nothing)."""
    from valueagent.agent.policies import POLICIES

    if info.has_axis:
        return
    if needy := [n for n in names if POLICIES[n].reads_value]:
        fail(f"{', '.join(needy)} need{'s' if len(needy) == 1 else ''} the value reading, and {info.model_id} "
             f"has no value axis: {no_axis_fix(model, info)}")


def ray_options(use_ray: bool, *, address: str | None, replicas: int | None, model: str) -> None:
    """``--ray`` with ``--address``/``--replicas``: those two only with it, Ray installed, and a model the
    replicas load themselves (a server URL has its own model)."""
    if not use_ray:
        if address is not None or replicas is not None:
            fail(f"{'--address' if address is not None else '--replicas'} only applies with --ray: add --ray")
        return
    if model.startswith(("http://", "https://")):
        fail("--ray starts its own model replicas: give --model a model id or path, not a server URL")
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        fail("--ray needs Ray: pip install 'valueagent[ray]' (or run without --ray)")
