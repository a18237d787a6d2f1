"""The bank on disk: ``DIR/bank.json`` (what made it) and one gzipped JSON file per task under ``DIR/tasks/``.

A task file is written whole to a temporary name, fsynced and renamed, so an interrupted build leaves
complete files only and ``--resume`` redoes just the missing tasks. Per-token floats are rounded (4
decimals; top-k log-probs 3) and the mean residual of a sample is float16 in base64: the 164-task bank of
the embedded model fits in a few MB, small enough to commit.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "bank.json"
TASKS_DIR = "tasks"
FORMAT = 1


class BankError(ValueError):
    """A bank cannot be used as asked; the message names the file and the fix."""


@dataclass(frozen=True, kw_only=True)
class BankManifest:
    """Everything that decides a bank's contents. Two builds with equal manifests are the same bank."""

    model_id: str
    revision: str | None
    weights: str  # how the weights were loaded (e.g. "Q4_K_M GGUF, dequantized")
    dtype: str  # the arithmetic
    quantization: str | None  # "int8" decoding or None
    axis: str | None
    axis_layer: int | None
    axis_sha256: str | None
    samples: int  # N fresh samples per task, besides the greedy answer
    temperature: float
    top_p: float
    seed: int
    seed_rule: str
    max_new_tokens: int
    prefill: str
    stop: tuple[str, ...]
    top_k: int
    tasks_source: str
    backend: str = "transformers"  # the engine that decoded (banks before the llama.cpp backend: transformers)
    format: int = FORMAT
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BankManifest:
        d = dict(data)
        d["stop"] = tuple(d.get("stop", ()))
        return cls(**d)

    def differences(self, other: BankManifest) -> list[str]:
        """The fields (besides ``extra``) on which two manifests disagree."""
        a, b = self.to_dict(), other.to_dict()
        return [k for k in a if k != "extra" and a[k] != b.get(k)]


def task_file(root: Path, task_id: str) -> Path:
    return root / TASKS_DIR / (task_id.replace("/", "_") + ".json.gz")


def write_task(root: Path, record: Mapping[str, Any]) -> Path:
    """Write one task's record atomically (temporary file, fsync, rename)."""
    path = task_file(root, str(record["task_id"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: two builders may share a bank
    data = gzip.compress(json.dumps(record, ensure_ascii=False, allow_nan=False).encode(), mtime=0)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def read_task(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BankError(f"{path} is torn or corrupt ({type(exc).__name__}): delete it and rerun "
                        "`valueagent bank build ... --resume` to redo that task") from None
    if not isinstance(record, dict) or not isinstance(record.get("samples"), list) or "task_id" not in record:
        raise BankError(f"{path} is not a bank task record: delete it and rerun `valueagent bank build ... --resume`")
    return record


def write_manifest(root: Path, manifest: BankManifest) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    os.replace(tmp, root / MANIFEST)


def read_manifest(root: Path) -> BankManifest:
    path = root / MANIFEST
    if not path.is_file():
        raise BankError(f"{root} is not a sample bank (no {MANIFEST}): build one with `valueagent bank build`")
    try:
        return BankManifest.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise BankError(f"{path} is not a bank manifest ({exc}); rebuild the bank or restore the file") from None


def done_task_ids(root: Path) -> set[str]:
    """Task ids whose file is complete (temporary files of an interrupted write do not count)."""
    folder = root / TASKS_DIR
    if not folder.is_dir():
        return set()
    out = set()
    for path in folder.glob("*.json.gz"):
        out.add(read_task(path)["task_id"])
    return out


@dataclass(frozen=True)
class Bank:
    """A loaded bank: its manifest and task records in task-id order."""

    root: Path
    manifest: BankManifest
    tasks: tuple[dict[str, Any], ...]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def subset(self, task_ids: set[str]) -> Bank:
        return Bank(self.root, self.manifest, tuple(t for t in self.tasks if t["task_id"] in task_ids))


def load_bank(root: str | Path) -> Bank:
    """Read a bank (never writes to it). A torn or partial task file is an error naming the file."""
    root = Path(root)
    manifest = read_manifest(root)
    paths = sorted((root / TASKS_DIR).glob("*.json.gz")) if (root / TASKS_DIR).is_dir() else []
    if not paths:
        raise BankError(f"{root} holds no finished tasks yet: run `valueagent bank build ... --resume`")
    tasks = []
    for path in paths:
        rec = read_task(path)
        n = len(rec["samples"])
        if n != manifest.samples + 1:
            raise BankError(f"{path} has {n} samples, the manifest says {manifest.samples} + greedy: delete it "
                            "and rerun `valueagent bank build ... --resume`")
        tasks.append(rec)
    tasks.sort(key=lambda r: _task_key(r["task_id"]))
    return Bank(root, manifest, tuple(tasks))


def _task_key(task_id: str) -> tuple[str, int, str]:
    head, _, tail = task_id.rpartition("/")
    return (head, int(tail), "") if tail.isdigit() else (task_id, -1, task_id)
